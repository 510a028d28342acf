"""Ray clusters for :mod:`kingpost.deploy.ray`: start or join one, wait for an application, stop.

Every wait has a deadline (Serve waits forever for a replica no node can host), and every failure
becomes one PackagingError sentence.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from kingpost.errors import PackagingError, describe

logger = logging.getLogger(__name__)


def init(ray: ModuleType, options: Mapping[str, Any], *, owns_cluster: bool) -> None:
    # A fresh node dies if its dashboard agent has not written its ports within Ray's fixed 15 s:
    # a busy machine, or a venv without compiled bytecode under PYTHONDONTWRITEBYTECODE (every Ray
    # process then compiles its imports), gets there. The second try finds the imports warm.
    for attempt in (1, 2) if owns_cluster else (1,):
        try:
            ray.init(logging_level=logging.WARNING, **options)
            return
        except Exception as exc:
            ray.shutdown()
            if attempt == 1 and owns_cluster and "timed out during startup" in str(exc):
                logger.warning("the local Ray node did not start in time; trying once more")
                continue
            where = ("start a local Ray cluster" if owns_cluster
                     else f"connect to the Ray cluster at {options['address']}")
            hint = "" if owns_cluster or os.environ.get("RAY_AUTH_MODE") else (
                " (a cluster with token authentication needs RAY_AUTH_MODE=token here, and its token "
                "in RAY_AUTH_TOKEN or ~/.ray/auth_token)")
            raise PackagingError(f"could not {where}: {describe(exc).rstrip('.')}{hint}.") from exc


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # As the servers that will bind it do: a port whose last connections wait out TIME_WAIT (which
        # HAProxy, closing first, leaves on its side) is free; one that something listens on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PackagingError(f"cannot serve on {host}:{port}: {exc.strerror or exc}.") from exc


def check_fits(ray: ModuleType, options: Mapping[str, Any], name: str) -> None:
    """On a cluster of one machine, fail now rather than wait for resources that never come."""
    actor = options.get("ray_actor_options", {})
    replicas = options.get("autoscaling_config", {}).get("min_replicas", options.get("num_replicas", 1))
    replicas = max(replicas if isinstance(replicas, int) else 1, 1)
    total = ray.cluster_resources()
    for option, resource, default in (("num_cpus", "CPU", 1.0), ("num_gpus", "GPU", 0.0)):
        need = float(actor.get(option, default)) * replicas
        if need > total.get(resource, 0.0):
            raise PackagingError(
                f"{name} needs {need:g} {resource} for {replicas} replica(s) but the local Ray cluster has "
                f"{total.get(resource, 0.0):g}; lower the replicas or resources, or pass --address of a "
                "cluster that has them.")


def wait_running(serve: ModuleType, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(name)
        status = str(getattr(app, "status", "NOT_STARTED"))
        if status.endswith("RUNNING"):
            return
        if status.endswith("DEPLOY_FAILED"):
            raise PackagingError(f"Ray Serve could not start {name}: {_why(app)}")
        if time.monotonic() > deadline:
            raise PackagingError(f"{name} was not running on Ray Serve after {timeout_s:g} s: {_why(app)}")
        time.sleep(0.25)


def _why(app: Any) -> str:
    """The one line of a Serve status that says what went wrong (kingpost's own sentence first)."""
    messages = [str(d.message) for d in getattr(app, "deployments", {}).values() if d.message]
    messages.append(str(getattr(app, "message", "") or ""))
    lines = [line.strip() for text in messages for line in text.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("kingpost.errors.")]
    if ours:
        return ours[-1].partition(": ")[2]
    return lines[0] if lines else "no status message"


def shutdown(ray: ModuleType, serve: ModuleType, name: str, *, owns_cluster: bool) -> None:
    """Remove the application, or all of Serve and the cluster when this process started it."""
    if not ray.is_initialized():
        return
    try:
        if owns_cluster:
            serve.shutdown()
        else:
            serve.delete(name)
    finally:
        ray.shutdown()
