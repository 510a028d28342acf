"""Truss's ``docker_server``: a bundle that brings its own HTTP server instead of a model.py.

    docker_server:
      start_command: vllm serve ... --port 8000    # run with /bin/sh -c, in the bundle directory
      server_port: 8000
      predict_endpoint: /v1/chat/completions        # what /v1/models/model:predict forwards to
      readiness_endpoint: /health
      liveness_endpoint: /health

kingpost runs the command as a child process and serves its own front door in front of it
(``kingpost.server.proxy``). Only config.yaml is read here.
"""

from __future__ import annotations

from dataclasses import dataclass

from kingpost.config import Config
from kingpost.errors import ConfigError


@dataclass(frozen=True)
class DockerServer:
    start_command: str
    server_port: int
    predict_endpoint: str
    readiness_endpoint: str
    liveness_endpoint: str
    run_as_user_id: int | None = None


def docker_server(config: Config) -> DockerServer | None:
    """The bundle's ``docker_server`` section, validated; None when it has none."""
    raw = config.raw.get("docker_server")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(config.path, "docker_server", "a mapping of keys to values", f"<{type(raw).__name__}>")

    def text(key: str, *, path: bool = False) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(config.path, f"docker_server.{key}",
                              "a path such as /health" if path else "a non-empty string",
                              value if value is not None else "<missing>")
        if path and not value.startswith("/"):
            raise ConfigError(config.path, f"docker_server.{key}", "a path starting with /", value)
        return value

    if raw.get("no_build"):
        raise ConfigError(config.path, "docker_server.no_build", "false or absent (kingpost starts the server "
                          "itself, so it needs start_command)", raw.get("no_build"))
    port = raw.get("server_port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(config.path, "docker_server.server_port", "a port number from 1 to 65535",
                          port if port is not None else "<missing>")
    user = raw.get("run_as_user_id")
    if user is not None and (isinstance(user, bool) or not isinstance(user, int) or user <= 0):
        raise ConfigError(config.path, "docker_server.run_as_user_id", "a non-root user id", user)
    return DockerServer(start_command=text("start_command"), server_port=port,
                        predict_endpoint=text("predict_endpoint", path=True),
                        readiness_endpoint=text("readiness_endpoint", path=True),
                        liveness_endpoint=text("liveness_endpoint", path=True), run_as_user_id=user)
