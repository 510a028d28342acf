"""What wraps the app, decided once at startup: each production feature is a layer only when on.

    outermost  RequestLog  (--log-format json)               request ids, JSON access lines
               Cors        (runtime.cors / --cors-*)         preflight answered before keys and model
               Tracing     (OTEL_* environment)              a span per request, children per stage
    innermost  App         (API keys checked in its route dispatch, see kingpost.server.auth)

With every feature off the server runs the bare :class:`App`: the ``:predict`` hot path is the
same code, not a wrapped one. The HTTP server and the Ray deployment both build their app here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kingpost import defaults
from kingpost.config import Config
from kingpost.errors import KingpostError
from kingpost.runtime import Runtime
from kingpost.server.app import App
from kingpost.server.auth import load_keys
from kingpost.server.cors import policy_from_config

LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Settings:
    """The production settings of one server (picklable: workers and Ray replicas get a copy)."""

    api_keys: tuple[str, ...] = field(default=(), repr=False)
    api_key_file: Path | None = None
    metrics_public: bool = False
    cors: dict[str, Any] = field(default_factory=dict)  # --cors-* flags given, by CorsPolicy field
    log_format: str = defaults.LOG_FORMAT


def check(settings: Settings, config: Config, *, secrets_dir: str | Path | None = None) -> None:
    """Fail with one sentence now, before a socket is opened, for what :func:`build` would refuse."""
    load_keys(settings.api_keys, settings.api_key_file, secrets_dir)
    policy_from_config(config.path, config.runtime.cors).merged(**settings.cors)
    from kingpost.server import tracing

    if tracing.wanted():
        try:
            import opentelemetry.sdk.trace  # noqa: F401
        except ImportError as exc:
            raise KingpostError("the OTEL_* environment asks for traces, but OpenTelemetry is not installed: "
                                "pip install 'kingpost[otel]'.") from exc


def build(runtime: Runtime, settings: Settings | None = None, *, secrets_dir: str | Path | None = None,
          access_log: bool = True, tracer_provider: Any = None, **app_options: Any) -> tuple[App, Any]:
    """The :class:`App` for ``runtime`` and the ASGI callable to serve (the app itself when no layer is on).

    Raises KingpostError (one sentence) for a bad keys file, a bad ``runtime.cors`` or tracing
    asked for by the environment without OpenTelemetry installed. ``tracer_provider`` turns
    tracing on with that provider (tests, embedding), whatever the environment says.
    """
    settings = settings or Settings()
    keys = load_keys(settings.api_keys, settings.api_key_file, secrets_dir)
    cors = policy_from_config(runtime.config.path, runtime.config.runtime.cors).merged(**settings.cors)
    json_logs = settings.log_format == "json"
    from kingpost.server import tracing

    traced = tracing.from_environment(tracer_provider)
    app = App(runtime, api_keys=keys, metrics_public=settings.metrics_public,
              access_log=access_log and not json_logs, **app_options)
    asgi: Any = app
    if traced is not None:
        asgi = tracing.Tracing(asgi, app, traced[0], owned=traced[1])
    if cors.enabled:
        from kingpost.server.cors import Cors

        asgi = Cors(asgi, cors)
    if json_logs:
        from kingpost.server.logs import RequestLog

        model = runtime.name if app.models is None else None  # several: each line names the path's model
        asgi = RequestLog(asgi, app.router, model, access=access_log)
    return app, asgi
