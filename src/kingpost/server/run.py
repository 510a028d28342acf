"""Run the app on uvicorn: bind, load in the background, drain on SIGTERM, exit with a status.

One worker serves in this process. With N workers, this process binds the socket, starts N
worker processes that share it (each loads its own model copy before it accepts a connection, so
whichever worker the kernel hands a connection to can answer it), forwards SIGTERM/SIGINT to them
and exits once all have drained.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from kingpost import defaults
from kingpost.config import Config, load_config
from kingpost.custom_server import docker_server
from kingpost.errors import KingpostError, ModelLoadError
from kingpost.runtime import Runtime
from kingpost.server.app import App
from kingpost.server.models import Found, Models, find_bundles

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


def serve(bundle_dir: str | Path | Sequence[str | Path], *, host: str = defaults.HOST, port: int = defaults.PORT,
          workers: int | None = None, debug: bool = False, grace_period: float = defaults.GRACE_PERIOD_S,
          access_log: bool = True, secrets_dir: str | Path | None = None, reload: bool = False) -> int:
    """Serve the bundle (or several: bundle directories and repositories of them) until SIGINT/SIGTERM.

    Returns the process exit status (0 after a clean drain). ``reload=True`` watches the (one) bundle
    and switches to each new version once it loads (one worker).
    """
    given = [bundle_dir] if isinstance(bundle_dir, (str, Path)) else list(bundle_dir)
    found = find_bundles(given)  # a bad config fails here, before a socket is opened
    configs = {name: load_config(path) for name, path in found.bundles.items()}
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
    options = Options(first, config, found, debug, grace_period, access_log,
                      Path(secrets_dir) if secrets_dir else None, logging.getLogger().getEffectiveLevel(), count,
                      reload)
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    plural = "s" if count > 1 else ""
    if found.single:
        what, where = config.model_name or first.resolve().name, "/v1/models/model:predict"
    else:
        what, where = f"{len(configs)} models ({', '.join(configs)})", "/v1/models/<name>:predict"
    print(f"kingpost: serving {what} on http://{bound_host}:{bound_port} ({count} worker{plural}); "
          f"predict: POST {where}, V2: POST /v2/models/<name>/infer", file=sys.stderr, flush=True)
    if count == 1:
        return _serve_socket(sock, options, load_before_serving=False)
    return _supervise(sock, count, options)


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
        server_config = uvicorn.Config(proxy, lifespan="on", access_log=False, log_config=None, server_header=False,
                                       timeout_keep_alive=defaults.KEEP_ALIVE_S,
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
            print(f"kingpost: the model failed to load; waiting for a change to reload: {exc}", file=sys.stderr,
                  flush=True)
            app.reload_error = str(exc)
            return
        print(f"error: the model failed to load: {exc}", file=sys.stderr, flush=True)
        status["code"] = 1
        if server is not None:
            server.should_exit = True

    app = App(runtime, debug=options.debug, access_log=options.access_log, on_uvicorn=True,
              load_before_serving=load_before_serving, on_load_failure=on_load_failure, models=models)
    del runtime, models  # the app holds them: an unloaded model must not stay alive in this frame
    if options.reload:
        from kingpost.server.reload import Reloader

        app.reloader = Reloader(app, options.bundle_dir.resolve(), secrets_dir=options.secrets_dir)
    config = uvicorn.Config(app, lifespan="on", access_log=False, log_config=None, server_header=False,
                            timeout_keep_alive=defaults.KEEP_ALIVE_S,
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


def _worker_main(sock: socket.socket, options: Options) -> None:
    logging.basicConfig(level=options.log_level, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(_serve_socket(sock, options, load_before_serving=True))


def _supervise(sock: socket.socket, count: int, options: Options) -> int:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker_main, args=(sock, options), name=f"kingpost-worker-{i}")
               for i in range(count)]
    for worker in workers:
        worker.start()
    # Each worker got its own copy of the listening socket at spawn. Keeping ours open would let
    # the kernel queue connections that no one accepts once the workers stop listening (on
    # SIGTERM): clients would hang instead of being refused while the workers drain.
    sock.close()
    stopping = False

    def stop(sig: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w.pid is not None and w.exitcode is None:
                os.kill(w.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while any(w.exitcode is None for w in workers):
            for w in workers:
                w.join(timeout=0.2)
                if w.exitcode not in (None, 0) and not stopping:
                    logger.error("worker %s exited with status %s; stopping the others", w.name, w.exitcode)
                    code = w.exitcode if w.exitcode > 0 else 1
                    stop(signal.SIGTERM, None)
        time.sleep(0)
        if code == 0:
            code = max((w.exitcode or 0) for w in workers)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
    return code
