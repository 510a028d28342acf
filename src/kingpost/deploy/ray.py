"""Ray Serve: a bundle as a Serve application, one kingpost runtime per replica.

    app = application("my-model", num_replicas=2)   # a bound deployment, to compose or serve.run
    with deploy("my-model", num_replicas=2) as d:   # no address: a local cluster of its own
        print(d.url)
        d.wait()                                    # until SIGINT or SIGTERM, then all is stopped

Each replica loads the model once and answers through kingpost's own ASGI app, so paths, JSON and
msgpack, streaming and error bodies are those of ``kingpost serve``; Serve's health check asks the
runtime's ``is_healthy``. ``resources`` become each replica's Ray resources (``cpu`` -> num_cpus,
``use_gpu``/``accelerator`` -> num_gpus), ``runtime.ray`` holds Serve defaults, and arguments
override both. Ray is an optional extra, imported inside functions only.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import re
import signal
import sys
import threading
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from kingpost import defaults
from kingpost.config import Config, load_config
from kingpost.deploy import _ray_cluster as cluster
from kingpost.deploy import _ray_ingress as ingresses
from kingpost.deploy._ray_options import deployment_options, parse_autoscale
from kingpost.errors import ConfigError, PackagingError, describe
from kingpost.types import Echo

if TYPE_CHECKING:
    from ray.serve import Application

logger = logging.getLogger(__name__)

INSTALL_LINE = 'pip install "kingpost[ray]"'
MIN_RAY = Version("2.59")
MAX_SHIP_BYTES = 32 * 2**20
_MISSING = f"Ray Serve is not installed; install it with: {INSTALL_LINE}"
# A local cluster: no usage reporting, workers at normal priority, and a 127.0.0.1 node address
# kept as given (Ray otherwise swaps it for the machine's first non-loopback address).
_LOCAL_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0",
              "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
_REMOTE_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}
_NOT_SHIPPED = frozenset({"__pycache__", ".git", ".hg", ".svn", ".venv", ".mypy_cache", ".pytest_cache"})
_QUIET_LOGS = {"enable_access_log": False, "log_level": "WARNING"}


def application(
    bundle_dir: str | Path,
    *,
    name: str | None = None,
    num_replicas: int | None = None,
    autoscaling: Mapping[str, Any] | None = None,
    max_ongoing_requests: int | None = None,
    ship: bool = True,
    secrets_dir: str | Path | None = None,
    settings: Any = None,
) -> Application:
    """The bundle as a bound Serve deployment, ready for ``serve.run`` or to compose with others.

    Args:
        bundle_dir: the bundle; its config.yaml is validated here, its model.py runs only on replicas.
        name: the deployment name (default: ``model_name``, else the directory name).
        num_replicas: a fixed replica count; overrides ``runtime.ray``.
        autoscaling: a Serve ``autoscaling_config`` such as ``{"min_replicas": 1, "max_replicas": 4}``,
            merged over ``runtime.ray.autoscaling_config``.
        max_ongoing_requests: requests one replica takes at once (default 128; kingpost's own predict
            lock and ``runtime.max_queue`` apply inside).
        ship: send the bundle's files (zipped, at most 32 MiB) with the deployment, so replicas on
            any node unpack their own copy. ``False``: replicas read ``bundle_dir`` itself (one
            machine, a shared filesystem, or a bundle too large to ship).
        secrets_dir: the secrets directory on the replicas' nodes (default ``/secrets``).
        settings: a :class:`kingpost.server.stack.Settings` (API keys, CORS, log format) for the
            replicas' HTTP app; keys are also read from ``$KINGPOST_API_KEY`` and the secrets dir there.

    A composing deployment calls a replica with ``await handle.predict.remote(x)``, or
    ``handle.options(stream=True).stream.remote(x)`` for a streaming model.
    """
    return _bind(bundle_dir, name=name, num_replicas=num_replicas, autoscaling=autoscaling,
                 max_ongoing_requests=max_ongoing_requests, ship=ship, secrets_dir=secrets_dir,
                 settings=settings)[0]


def default_name(config: Config) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", config.model_name or config.path.parent.name)


class Deployment:
    """A bundle running on Ray Serve. ``close()`` removes it, and the cluster if this process made it."""

    def __init__(self, name: str, host: str, port: int, *, owns_cluster: bool, ingress: str | None = None) -> None:
        self.name = name
        self.port = port
        self.owns_cluster = owns_cluster
        self.ingress = ingress  # "haproxy" or "proxy" on a local cluster; None: the cluster's own
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
        self._closed = False

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM arrives (call from the main thread)."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.wait(1.0):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        cluster.shutdown(*_import_ray(), self.name, owns_cluster=self.owns_cluster)

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def deploy(
    bundle_dir: str | Path,
    *,
    address: str | None = None,
    host: str = defaults.HOST,
    port: int = defaults.RAY_PORT,
    name: str | None = None,
    num_replicas: int | None = None,
    autoscaling: Mapping[str, Any] | None = None,
    max_ongoing_requests: int | None = None,
    ship: bool | None = None,
    secrets_dir: str | Path | None = None,
    init_options: Mapping[str, Any] | None = None,
    timeout_s: float = defaults.RAY_TIMEOUT_S,
    ingress: str | None = None,
) -> Deployment:
    """Run the bundle on Ray Serve at ``/`` and return once every replica has loaded the model.

    Without ``address``, a local cluster is started on 127.0.0.1 (``init_options`` go to
    ``ray.init``, e.g. ``{"num_gpus": 1}``) and stopped again by ``close()``. With an address
    (``"auto"``, ``"10.0.0.5:6379"``, ``"ray://..."``), the application joins that cluster and
    ``close()`` deletes only the application. ``ship`` defaults to True for an address. Raises
    PackagingError when Ray is missing, the cluster cannot be reached, or the application does
    not run within ``timeout_s`` (a model that fails to load, resources no node has).

    ``ingress`` (a local cluster only): ``"haproxy"``, the default where Ray has an HAProxy binary,
    or ``"proxy"`` (Serve's Python proxy, 5-6x the CPU per request); see :mod:`._ray_ingress`.
    A bad value raises ValueError.
    """
    owns_cluster = address is None
    ingresses.check(ingress, local=owns_cluster)
    chosen = ingresses.choose(ingress) if owns_cluster else None
    # Read by Ray when it is first imported, and by the processes the cluster starts.
    for key, value in (_LOCAL_ENV if owns_cluster else _REMOTE_ENV).items():
        os.environ.setdefault(key, value)
    if chosen is not None:
        ingresses.apply(chosen)
    ray, serve = _import_ray()
    app, options, name = _bind(bundle_dir, name=name, num_replicas=num_replicas, autoscaling=autoscaling,
                         max_ongoing_requests=max_ongoing_requests,
                         ship=address is not None if ship is None else ship, secrets_dir=secrets_dir)
    if owns_cluster:
        cluster.check_port_free(host, port)
        init: dict[str, Any] = {"address": "local", "include_dashboard": False,
                                "_node_ip_address": "127.0.0.1", **(init_options or {})}
    else:
        init = {"address": address, **(init_options or {})}
    cluster.init(ray, init, owns_cluster=owns_cluster)
    try:
        if owns_cluster:
            cluster.check_fits(ray, options, name)
        serve.start(http_options={"host": host, "port": port}, logging_config=_QUIET_LOGS)
        serve.run_many([serve.RunTarget(app, name=name, route_prefix="/", logging_config=_QUIET_LOGS)],
                       wait_for_applications_running=False)
        cluster.wait_running(serve, name, timeout_s)
    except BaseException:
        cluster.shutdown(ray, serve, name, owns_cluster=owns_cluster)
        raise
    return Deployment(name, host, port, owns_cluster=owns_cluster, ingress=chosen)


def main(
    bundle_dir: str | Path,
    *,
    replicas: int | None = None,
    autoscale: str | None = None,
    address: str | None = None,
    host: str = defaults.HOST,
    port: int = defaults.RAY_PORT,
    ship: bool | None = None,
    secrets_dir: str | Path | None = None,
    timeout_s: float = defaults.RAY_TIMEOUT_S,
    ingress: str | None = None,
    echo: Echo | None = None,
) -> int:
    """``kingpost ray``: deploy, say where, serve until SIGINT/SIGTERM, then stop. Returns the exit status.

    Raises KingpostError (one sentence) when the deployment cannot be made.
    """
    say = echo or (lambda message: print(message, file=sys.stderr, flush=True))
    if importlib.util.find_spec("ray") is None:
        raise PackagingError(_MISSING)
    try:
        autoscaling = None if autoscale is None else parse_autoscale(autoscale)
        ingresses.check(ingress, local=address is None)
    except ValueError as exc:
        say(f"error: {exc}")
        return 2
    where = "a local Ray cluster" if address is None else f"the Ray cluster at {address}"
    say(f"Starting {Path(bundle_dir).name} on {where} ...")
    with deploy(bundle_dir, address=address, host=host, port=port, num_replicas=replicas, autoscaling=autoscaling,
                ship=ship, secrets_dir=secrets_dir, timeout_s=timeout_s, ingress=ingress) as running:
        through = {"haproxy": " through HAProxy", "proxy": " through Serve's proxy"}.get(running.ingress or "", "")
        say(f"Serving {running.name} on Ray Serve at {running.url}{through} (Ctrl-C stops it)")
        running.wait()
        say("Stopping ...")
    return 0


def _import_ray() -> tuple[ModuleType, ModuleType]:
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        if importlib.util.find_spec("ray") is None:
            raise PackagingError(_MISSING) from exc
        raise PackagingError(f"Ray Serve is installed but does not import ({describe(exc)}); "
                             f"reinstall it with: {INSTALL_LINE}") from exc
    if Version(ray.__version__) < MIN_RAY:  # the replica relies on Serve's late-bound ASGI ingress
        raise PackagingError(f"kingpost ray needs Ray {MIN_RAY} or newer, found {ray.__version__}; "
                             f"upgrade it with: {INSTALL_LINE}")
    return ray, serve


def _bind(
    bundle_dir: str | Path,
    *,
    name: str | None,
    num_replicas: int | None,
    autoscaling: Mapping[str, Any] | None,
    max_ongoing_requests: int | None,
    ship: bool,
    secrets_dir: str | Path | None,
    settings: Any = None,
) -> tuple[Application, dict[str, Any], str]:
    """The bound deployment, the Serve options it was given, and its name."""
    serve = _import_ray()[1]
    bundle_dir = Path(bundle_dir).resolve()
    config = load_config(bundle_dir)
    options = deployment_options(config, num_replicas=num_replicas, autoscaling=autoscaling,
                                 max_ongoing_requests=max_ongoing_requests)
    payload = _zip_bundle(bundle_dir) if ship else None
    name = name or default_name(config)
    from kingpost.deploy._replica import KingpostReplica

    try:
        deployment = serve.deployment(KingpostReplica).options(name=name, **options)
    except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(config.path, "runtime.ray", "deployment options that Ray Serve accepts",
                          f"<{describe(exc)}>") from exc
    return (deployment.bind(str(bundle_dir), payload, None if secrets_dir is None else str(secrets_dir), settings),
            options, name)


def _zip_bundle(bundle_dir: Path) -> bytes:
    """The bundle's files as one zip (caches and VCS left out) for the replicas to unpack."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(bundle_dir.rglob("*")):
            parts = set(path.relative_to(bundle_dir).parts)
            if path.is_file() and not parts & _NOT_SHIPPED and path.suffix != ".pyc":
                archive.write(path, path.relative_to(bundle_dir).as_posix())
    if buffer.tell() > MAX_SHIP_BYTES:
        raise PackagingError(
            f"{bundle_dir} zips to {buffer.tell() / 2**20:.0f} MiB, more than the {MAX_SHIP_BYTES // 2**20} MiB "
            "kingpost ships with a deployment; put the bundle where every node reads the same path and "
            "deploy it with ship=False.")
    return buffer.getvalue()
