"""Run the app on uvicorn: bind, load in the background, drain on SIGTERM, exit with a status.

One worker serves in this process. With N workers, this process binds the socket and hands it to
a :class:`~kingpost.server.supervisor.Supervisor`, which starts N worker processes that share it
(each loads its own model copy before it accepts a connection, so whichever worker the kernel hands
a connection to can answer it), restarts those that die, forwards SIGTERM/SIGINT to them and exits
once all have drained. Every connection goes through :mod:`kingpost.server.guard`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn

from kingpost import defaults
from kingpost.config import Config, load_config
from kingpost.custom_server import docker_server
from kingpost.errors import KingpostError, ModelLoadError
from kingpost.jobs.service import JobService, open_store
from kingpost.jobs.settings import JobSettings
from kingpost.limits import LOOPBACK_HOSTS, Limits
from kingpost.loader import require_model_file
from kingpost.runtime import Runtime
from kingpost.server import heap
from kingpost.server.auth import load_keys
from kingpost.server.cors import policy_from_config
from kingpost.server.guard import protocol_class, raise_descriptor_limit
from kingpost.server.models import Found, Models, find_bundles
from kingpost.server.stack import Settings, build, check
from kingpost.server.supervisor import LOAD_FAILED, STUCK, Supervisor
from kingpost.unsupported import refuse_unsupported

logger = logging.getLogger("kingpost.server")


@dataclass(frozen=True)
class Options:
    bundle_dir: Path  # the first (or only) bundle
    config: Config  # its config, read once, here; a worker process gets it pickled
    found: Found
    debug: bool
    grace_period: float
    access_log: bool
    secrets_dir: Path | None
    log_level: int
    workers: int = 1
    reload: bool = False
    jobs: JobSettings = field(default_factory=JobSettings)  # off
    settings: Settings = field(default_factory=Settings)


def serve(bundle_dir: str | Path | Sequence[str | Path], *, host: str = defaults.HOST, port: int = defaults.PORT,
          workers: int | None = None, debug: bool = False, grace_period: float = defaults.GRACE_PERIOD_S,
          access_log: bool = True, secrets_dir: str | Path | None = None, reload: bool = False,
          jobs_dir: str | Path | None = None, jobs_database: str | None = None,
          webhook_secret: str | None = None, settings: Settings | None = None) -> int:
    """Serve the bundle (or several: bundle directories and repositories of them) until SIGINT/SIGTERM.

    Returns the process exit status (0 after a clean drain). ``reload=True`` watches the (one) bundle
    and switches to each new version once it loads (one worker). ``jobs_dir`` (SQLite) or
    ``jobs_database`` (a postgresql:// URL) turns durable async jobs on (see
    :mod:`kingpost.jobs.settings` for the ``KINGPOST_JOBS_*`` variables that tune them). ``settings``
    holds the production features (API keys, CORS, JSON logs; traces come from ``OTEL_*``): see
    :mod:`kingpost.server.stack`.
    """
    given = [bundle_dir] if isinstance(bundle_dir, (str, Path)) else list(bundle_dir)
    found = find_bundles(given)  # a bad config fails here, before a socket is opened
    configs = {name: load_config(path) for name, path in found.bundles.items()}
    for name, path in found.bundles.items():
        refuse_unsupported(configs[name])
        if docker_server(configs[name]) is None:  # a bundle with its own server has no model.py
            require_model_file(path, configs[name])
    first_name, first = next(iter(found.bundles.items()))
    config = configs[first_name]
    count = workers or (config.runtime.workers if found.single else 1)
    if reload and not found.single:
        raise KingpostError("--reload watches one bundle; serve several without it.")
    if reload and count > 1:
        raise KingpostError(f"--reload serves with one worker; drop --workers (or runtime.workers: {count}).")
    if reload and importlib.util.find_spec("watchfiles") is None:
        raise KingpostError("--reload needs the watchfiles package: pip install 'kingpost[reload]'.")
    custom = [name for name, c in configs.items() if docker_server(c) is not None]
    if custom and not found.single:
        raise KingpostError(f"{configs[custom[0]].path}: docker_server: a bundle with its own server is served "
                            "alone, not beside other models; serve it by itself.")
    if custom and reload:
        raise KingpostError(f"{config.path}: docker_server: --reload watches a model.py bundle; a bundle with its "
                            "own server restarts with kingpost serve.")
    if custom and count > 1:
        logger.warning("%s: a docker_server bundle runs one custom server on docker_server.server_port; "
                       "serving it with 1 worker, not %d.", config.path, count)
        count = 1
    jobs = JobSettings.from_env(jobs_dir=jobs_dir, jobs_database=jobs_database, webhook_secret=webhook_secret)
    if jobs.location is not None:
        if custom:
            raise KingpostError(f"{config.path}: docker_server: async jobs run through kingpost's runtime, which a "
                                "bundle with its own server does not use; drop --jobs-dir/--jobs-database.")
        if not found.single:
            raise KingpostError("async jobs serve one bundle per server for now; serve this bundle alone to use "
                                "--jobs-dir/--jobs-database (or KINGPOST_JOBS_DIR/KINGPOST_JOBS_DATABASE).")
        if reload:
            raise KingpostError("--reload and async jobs do not combine yet (a job would run on the old "
                                "version); drop one of them.")
        open_store(jobs.location).close()  # an unreachable database fails here; the tables exist before workers
    settings = settings or Settings()
    if custom and (load_keys(settings.api_keys, settings.api_key_file, secrets_dir) is not None
                   or policy_from_config(config.path, config.runtime.cors).merged(**settings.cors).enabled):
        raise KingpostError(f"{config.path}: docker_server: API keys and CORS are not applied in front of a "
                            "custom server yet; serve it without --api-key/KINGPOST_API_KEY and CORS settings, "
                            "behind a proxy that checks them.")
    options = Options(first, config, found, debug, grace_period, access_log,
                      Path(secrets_dir) if secrets_dir else None, logging.getLogger().getEffectiveLevel(), count,
                      reload, jobs, settings)
    model = (config.model_name or first.resolve().name) if found.single else None
    _use_log_format(settings, model)
    # Keys, CORS and tracing are checked here too, so that a mistake fails before a socket is opened.
    for checked in configs.values():
        check(settings, checked, secrets_dir=options.secrets_dir)
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    plural = "s" if count > 1 else ""
    if found.single:
        what, where = config.model_name or first.resolve().name, "/v1/models/model:predict"
    else:
        what, where = f"{len(configs)} models ({', '.join(configs)})", "/v1/models/<name>:predict"
    banner = (f"kingpost: serving {what} on http://{bound_host}:{bound_port} ({count} worker{plural}); "
              f"predict: POST {where}, V2: POST /v2/models/<name>/infer")
    if settings.log_format == "json":  # every line on stderr is then a JSON object, this one too
        from kingpost.server.logs import announce

        announce(banner, model)
    else:
        print(banner, file=sys.stderr, flush=True)
    raise_descriptor_limit()  # before the workers start: they inherit it
    if count == 1:
        return _serve_socket(sock, options, load_before_serving=False)
    return Supervisor(sock, count, _worker_main, (options,)).run()


class _Server(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM after draining (exit 143); a drained server exits 0 here."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def _serve_socket(sock: socket.socket, options: Options, *, load_before_serving: bool) -> int:
    # Python hands the GIL to a waiting thread only every switch interval (5 ms by default). A
    # predict thread that wakes while the event loop is busy would idle the model that long.
    sys.setswitchinterval(float(os.environ.get("KINGPOST_SWITCH_INTERVAL", defaults.SWITCH_INTERVAL_S)))
    spec = docker_server(options.config) if options.found.single else None
    if spec is not None:
        from kingpost.server.proxy import ProxyApp

        proxy = ProxyApp(options.bundle_dir, options.config, spec, access_log=options.access_log,
                         grace_period=options.grace_period, secrets_dir=options.secrets_dir)
        limits = options.config.runtime.limits  # the same connection guards as a model.py bundle's server
        http = protocol_class(limits, options.config.runtime.max_request_bytes, lambda scope: False)
        server_config = uvicorn.Config(proxy, http=http, lifespan="on", access_log=False, log_config=None,
                                       server_header=False, timeout_keep_alive=int(limits.idle_timeout_s) or 1,
                                       timeout_graceful_shutdown=options.grace_period)  # type: ignore[arg-type]
        _Server(server_config).run(sockets=[sock])
        return 0
    models = None if options.found.single else Models(options.found, secrets_dir=options.secrets_dir,
                                                       workers=options.workers)
    runtime = (Runtime(options.bundle_dir, options.config, secrets_dir=options.secrets_dir)
               if models is None else next(iter(models.runtimes.values())))
    status = {"code": 0}
    server: _Server | None = None

    def on_load_failure(exc: ModelLoadError) -> None:
        if options.reload:  # keep serving (readiness says why) until a change fixes it
            print(f"kingpost: the model failed to load; waiting for a change to reload: {app.redact(str(exc))}",
                  file=sys.stderr, flush=True)
            app.reload_error = str(exc)
            return
        print(f"error: the model failed to load: {app.redact(str(exc))}", file=sys.stderr, flush=True)
        status["code"] = LOAD_FAILED
        if server is not None:
            server.should_exit = True

    def on_stuck() -> None:  # one of several workers: end it, and the supervisor starts a fresh one
        status["code"] = STUCK
        if server is not None:
            server.should_exit = True

    limits = options.config.runtime.limits
    jobs = JobService(runtime, options.jobs, debug=options.debug, grace_s=options.grace_period) \
        if options.jobs.enabled else None
    app, asgi = build(runtime, options.settings, secrets_dir=options.secrets_dir, access_log=options.access_log,
                      debug=options.debug, on_uvicorn=True, load_before_serving=load_before_serving,
                      on_load_failure=on_load_failure, models=models, jobs=jobs,
                      allowed_hosts=allowed_hosts(limits, sock), on_stuck=on_stuck if options.workers > 1 else None)
    del runtime, models  # the app holds them: an unloaded model must not stay alive in this frame
    if not options.reload:
        heap.enable()  # a server's heap is frozen once its models load
    if options.reload:
        from kingpost.server.reload import Reloader

        app.reloader = Reloader(app, options.bundle_dir.resolve(), secrets_dir=options.secrets_dir)
    http = protocol_class(limits, app.max_bytes, app.cancellable)
    config = uvicorn.Config(asgi, http=http, lifespan="on", access_log=False, log_config=None, server_header=False,
                            timeout_keep_alive=int(limits.idle_timeout_s) or 1,
                            timeout_graceful_shutdown=options.grace_period)  # type: ignore[arg-type]  # a float works
    server = _Server(config)
    server.run(sockets=[sock])
    return status["code"]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise KingpostError(f"cannot listen on {host}:{port}: {exc.strerror or exc}.") from exc
    sock.listen(defaults.LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def _use_log_format(settings: Settings, model: str | None) -> None:
    if settings.log_format == "json":
        from kingpost.server.logs import use_json

        use_json(model)


def _worker_main(sock: socket.socket, options: Options) -> None:
    logging.basicConfig(level=options.log_level, format="%(levelname)s %(name)s: %(message)s")
    model = (options.config.model_name or options.bundle_dir.resolve().name) if options.found.single else None
    _use_log_format(options.settings, model)
    sys.exit(_serve_socket(sock, options, load_before_serving=True))


def allowed_hosts(limits: Limits, sock: socket.socket) -> frozenset[bytes] | None:
    """The Host header values to accept: ``limits.allowed_hosts``, else loopback names when bound to
    loopback (a web page cannot then reach the server through a DNS name it controls), else any."""
    names = limits.allowed_hosts
    host, port = sock.getsockname()[:2]
    if names is None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return None
        names = LOOPBACK_HOSTS
    if "*" in names:
        return None
    return frozenset(n.encode() for name in names for n in (name, f"{name}:{port}"))
