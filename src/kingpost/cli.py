"""The ``kingpost`` command: a thin shell over the public functions.

Every failure is one line on stderr and a non-zero exit status; printing lives here only.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from kingpost import defaults
from kingpost.errors import KingpostError

F = TypeVar("F", bound=Callable[..., Any])
BUNDLE = click.Path(file_okay=False, path_type=Path)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _errors_to_one_line(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KingpostError as exc:
            _fail(str(exc))
        except OSError as exc:  # our own I/O: an unreadable -f FILE, an unwritable init directory
            _fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
        except KeyboardInterrupt:
            _fail("interrupted", 130)
    return wrapper  # type: ignore[return-value]


_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class _Group(click.Group):
    """Usage errors as one line too (click prints a usage block, a blank line and the error)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # plain `kingpost`: the help, as for --help
            click.echo(exc.format_message())
            code = 0
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _fail(exc.format_message().rstrip(".") + "." + hint, exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("interrupted", 130)
        sys.exit(code if isinstance(code, int) else 0)  # an int is the status of --help, --version


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kingpost")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="How much to log on stderr.")
def main(log_level: str) -> None:
    """Bundle a model with its pre/post-processing and run it anywhere (Truss-compatible bundles)."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("directory", type=BUNDLE)
@_errors_to_one_line
def init(directory: Path) -> None:
    """Scaffold a new bundle in DIRECTORY (new or empty)."""
    from kingpost.scaffold import init as scaffold

    path = scaffold(directory)
    click.echo(f"Created bundle {path}. Try: kingpost predict {path} --example hello")


def _isolated_option(fn: F) -> F:
    fn = click.option("--python", "python", default=None, metavar="VERSION",
                      help="With --isolated: the Python (3.11, py311) instead of the bundle's python_version.")(fn)
    return click.option("--isolated", is_flag=True,
                        help="Run in a virtual environment built from the bundle's own requirements.")(fn)


def _secrets_option(fn: F) -> F:
    return click.option("--secrets-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Directory of secret files (default: $KINGPOST_SECRETS_DIR or /secrets).")(fn)


@main.command()
@click.argument("directory", type=BUNDLE)
@click.option("-d", "--data", help="The input as a JSON string.")
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="A file holding the input as JSON ('-' reads stdin).")
@click.option("--example", help="The name of an input in the bundle's examples.yaml.")
@_isolated_option
@_secrets_option
@_errors_to_one_line
def predict(directory: Path, data: str | None, file: Path | None, example: str | None, isolated: bool,
            python: str | None, secrets_dir: Path | None) -> None:
    """Run one prediction in this process and print the output as JSON."""
    if sum(x is not None for x in (data, file, example)) != 1:
        _fail("give exactly one input: -d JSON, -f FILE or --example NAME.", 2)
    if isolated:
        _run_isolated(directory, python)
    elif python is not None:
        _fail("--python chooses the interpreter of --isolated; give --isolated too.", 2)
    _install_progress()
    import kingpost
    from kingpost.bundle import Chunks
    from kingpost.codecs import decode_json, encode_json

    bundle = kingpost.load(directory, secrets_dir=secrets_dir)
    if example is not None:
        result = bundle.predict(example=example)
    else:
        source = "-d" if data is not None else "stdin" if str(file) == "-" else str(file)
        body = sys.stdin.buffer.read() if str(file) == "-" else (
            file.read_bytes() if file is not None else (data or "").encode())
        try:
            model_input = decode_json(body)
        except KingpostError as exc:
            _fail(f"{source}: {str(exc).replace('the request body', 'the input')}")
        result = bundle.predict(model_input)
    out = sys.stdout.buffer
    if isinstance(result, Chunks):
        for chunk in result:
            out.write(chunk.encode() if isinstance(chunk, str) else chunk if isinstance(chunk, bytes)
                      else encode_json(chunk) + b"\n")
            out.flush()
        out.write(b"\n")
    else:
        out.write(encode_json(result) + b"\n")
    out.flush()


@main.command()
@click.argument("directories", nargs=-1, required=True, type=BUNDLE)
@click.option("--host", default=defaults.HOST, show_default=True, help="Address to bind (0.0.0.0 for all).")
@click.option("--port", default=defaults.PORT, show_default=True, type=int, help="Port to bind (0 picks a free one).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Server processes, each with its own model copy (default: runtime.workers or 1).")
@click.option("--debug", is_flag=True, help="Include exception text in 500 bodies.")
@click.option("--grace-period", default=defaults.GRACE_PERIOD_S, show_default=True, type=float,
              help="Seconds to let in-flight requests finish on SIGTERM/SIGINT.")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="One line per request.")
@click.option("--reload", is_flag=True,
              help="Watch the bundle; load each changed version beside the running one and switch when it is ready.")
@click.option("--jobs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep durable async jobs in SQLite in this directory (default: $KINGPOST_JOBS_DIR; none: off).")
@click.option("--jobs-database", default=None, metavar="URL",
              help="Keep async jobs in PostgreSQL instead: postgresql://... (default: $KINGPOST_JOBS_DATABASE).")
@click.option("--webhook-secret", default=None, envvar="KINGPOST_WEBHOOK_SECRET", show_envvar=True,
              help="Sign job webhooks with this HMAC key (else the bundle's secret 'webhook_secret').")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=defaults.LOG_FORMAT, show_default=True,
              envvar="KINGPOST_LOG_FORMAT", help="json: one JSON object a line, with request ids.")
@click.option("--api-key", "api_keys", multiple=True, metavar="KEY",
              help="Require this API key on every route but liveness/readiness (repeatable; also $KINGPOST_API_KEY "
                   "and <secrets dir>/kingpost_api_keys).")
@click.option("--api-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A file of API keys, one a line.")
@click.option("--metrics-public", is_flag=True, help="Serve /metrics without an API key.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Allow browser pages from ORIGIN ('*' for any; repeatable). CORS is off without one.")
@click.option("--cors-method", "cors_methods", multiple=True, metavar="METHOD",
              help="Methods allowed cross-origin (repeatable; default GET, POST, OPTIONS).")
@click.option("--cors-header", "cors_headers", multiple=True, metavar="HEADER",
              help="Request headers allowed cross-origin (repeatable; default authorization, content-type, ...).")
@click.option("--cors-credentials", is_flag=True, default=None, help="Allow credentials (cookies, auth) cross-origin.")
@click.option("--cors-max-age", type=click.IntRange(min=0), default=None, help="Seconds a browser caches a preflight.")
@_isolated_option
@_secrets_option
@_errors_to_one_line
def serve(directories: tuple[Path, ...], host: str, port: int, workers: int | None, debug: bool,
          grace_period: float, access_log: bool, reload: bool, jobs_dir: Path | None, jobs_database: str | None,
          webhook_secret: str | None, log_format: str, api_keys: tuple[str, ...], api_key_file: Path | None,
          metrics_public: bool, cors_origins: tuple[str, ...], cors_methods: tuple[str, ...],
          cors_headers: tuple[str, ...], cors_credentials: bool | None, cors_max_age: int | None, isolated: bool,
          python: str | None,
          secrets_dir: Path | None) -> None:
    """Serve the bundle over HTTP (Truss's paths and the V2 protocol) until SIGINT/SIGTERM.

    Several DIRECTORIES (bundles, or repositories holding bundle directories) are served side by
    side, each under its model name: /v1/models/<name>:predict and /v2/models/<name>/infer.
    """
    if isolated:
        if len(directories) > 1:
            _fail("--isolated takes one bundle (one environment per server); serve several without it.", 2)
        _run_isolated(directories[0], python)
    elif python is not None:
        _fail("--python chooses the interpreter of --isolated; give --isolated too.", 2)
    _install_progress()
    from kingpost.server.run import serve as run
    from kingpost.server.stack import Settings

    cors = {"allow_origins": cors_origins, "allow_methods": cors_methods, "allow_headers": cors_headers,
            "allow_credentials": cors_credentials, "max_age": cors_max_age}
    settings = Settings(api_keys=api_keys, api_key_file=api_key_file, metrics_public=metrics_public, cors=cors,
                        log_format=log_format)
    sys.exit(run(directories[0] if len(directories) == 1 else directories, host=host, port=port, workers=workers,
                 debug=debug, grace_period=grace_period, access_log=access_log, secrets_dir=secrets_dir,
                 jobs_dir=jobs_dir, jobs_database=jobs_database, webhook_secret=webhook_secret,
                 settings=settings, **({"reload": True} if reload else {})))


@main.command()
@click.argument("url")
@click.option("-d", "--data", help="The input as a JSON string.")
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="A file holding the input as JSON ('-' reads stdin).")
@click.option("--api-key", envvar="KINGPOST_API_KEY", default=None,
              help="Sent as 'Authorization: Bearer KEY' (default: $KINGPOST_API_KEY).")
@click.option("--timeout", type=float, default=defaults.CLIENT_TIMEOUT_S, show_default=True,
              help="Seconds to wait for the answer.")
@click.option("--retries", type=click.IntRange(min=0), default=defaults.CLIENT_RETRIES, show_default=True,
              help="Retries on a refused connection or a 503 (a request that may have run is never retried).")
@click.option("--model", default="model", show_default=True, help="The model name in the predict path.")
@_errors_to_one_line
def call(url: str, data: str | None, file: Path | None, api_key: str | None, timeout: float, retries: int,
         model: str) -> None:
    """Send one input to a running server at URL and print the answer (streamed as it arrives)."""
    if (data is None) == (file is None):
        _fail("give exactly one input: -d JSON or -f FILE.", 2)
    from kingpost.client import Client
    from kingpost.codecs import decode_json, encode_json

    source = "-d" if data is not None else "stdin" if str(file) == "-" else str(file)
    body = sys.stdin.buffer.read() if str(file) == "-" else (file.read_bytes() if file is not None
                                                               else (data or "").encode())
    try:
        model_input = decode_json(body)
    except KingpostError as exc:
        _fail(f"{source}: {str(exc).replace('the request body', 'the input')}")
    out = sys.stdout.buffer
    with Client(url, api_key=api_key, timeout=timeout, retries=retries, model=model) as client, \
            client.predict_stream(model_input) as stream:
        for chunk in stream:
            out.write(chunk.encode() if stream.streamed else encode_json(chunk))
            out.flush()
    out.write(b"\n")
    out.flush()


@main.command()
@click.argument("directory", type=BUNDLE)
@_errors_to_one_line
def check(directory: Path) -> None:
    """Validate a bundle and show what it holds, without building the Model or running load()."""
    from kingpost.check import check as run_check

    report = run_check(directory)
    cfg = report.config
    echo = click.echo
    echo(f"bundle        {report.bundle_dir}  (model_name: {cfg.model_name or '-'}, python: {cfg.python_version})")
    if cfg.description:
        echo(f"description   {cfg.description}")
    for key, value in cfg.model_metadata.items():
        echo(f"metadata      {key}: {value}")
    if report.server is not None:
        srv = report.server
        echo(f"server        {srv.start_command}  (port {srv.server_port}; predict: {srv.predict_endpoint}, "
             f"readiness: {srv.readiness_endpoint}, liveness: {srv.liveness_endpoint})")
    else:
        echo(f"model file    {report.model_file.relative_to(report.bundle_dir)}  (class {cfg.model_class_name})")
    for source in report.sources:
        echo(f"fetches       {source.key}: {source.url}{'@' + source.revision if source.revision else ''} "
             f"-> {source.mount}")
    if report.hooks:
        echo("hooks         " + ", ".join(f"{name}: {kind}" for name, kind in report.hooks.items()))
    rt = cfg.runtime
    batching = (f", batching: max_batch_size {rt.batching.max_batch_size}, max_wait_ms {rt.batching.max_wait_ms:g}"
                if rt.batching else "")
    echo(f"runtime       predict_concurrency: {rt.predict_concurrency}{batching}")
    for name, size in report.data_files:
        echo(f"data          {name}  ({_size(size)})")
    for req in report.requirements:
        state = "not for this platform" if not req.applies else f"installed {req.installed}" if req.satisfied else (
            f"installed {req.installed}, does not match" if req.installed else "NOT INSTALLED")
        echo(f"requirement   {req.line}  ({state})")
    for name, value in cfg.environment_variables.items():
        echo(f"environment   {name}={value}")
    if cfg.secrets:
        echo("secrets       " + ", ".join(cfg.secrets))
    if report.examples:
        echo("examples      " + ", ".join(report.examples))
    if report.missing and report.error is None:  # else the error says what is missing
        names = ", ".join(r.line for r in report.missing)
        echo(f"warning: requirements not satisfied in this environment: {names} "
             "(install them, or use --isolated)", err=True)
    if report.error is not None:
        _fail(str(report.error))


@main.command()
@click.argument("directories", nargs=-1, required=True, type=BUNDLE, metavar="DIRECTORY")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--weights", "weights", type=click.Choice(["start", "bake"]), default="start", show_default=True,
              help="Fetch model_cache/weights/external_data when the container starts, or bake them into "
                   "a layer below the code.")
@_errors_to_one_line
def context(directories: tuple[Path, ...], out: Path, weights: str) -> None:
    """Write a deterministic container build context (Dockerfile and all) for the bundle to OUT."""
    directory = _one_bundle("context", directories)
    from kingpost._progress import Progress
    from kingpost.container.context import write_context

    with Progress() as progress:
        progress(f"kingpost: writing the build context of {directory} to {out}")
        write_context(directory, out, weights=weights)
    click.echo(f"Wrote build context {out}. Build it with: docker build -t IMAGE {out}")


@main.command()
@click.argument("directories", nargs=-1, required=True, type=BUNDLE, metavar="DIRECTORY")
@click.option("-t", "--tag", default=None, help="Image name and tag (default: kingpost-<model_name>:latest).")
@click.option("--context-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the build context (default: a temporary directory).")
@_errors_to_one_line
def image(directories: tuple[Path, ...], tag: str | None, context_dir: Path | None) -> None:
    """Build a container image with the engine found (docker, else podman or buildah)."""
    directory = _one_bundle("image", directories)
    from kingpost._progress import Progress
    from kingpost.container.image import build_image

    with Progress() as progress:  # on a terminal, the engine's lines move one live line; else they go as they are
        built = build_image(directory, tag=tag, context_dir=context_dir, echo=progress if progress.live else None)
    click.echo(f"Built image {built}")


@main.command()
@click.argument("directory", type=BUNDLE)
@click.option("--refresh", is_flag=True, help="List every source again, even one already in the cache.")
@click.option("--verify", is_flag=True, help="Re-hash the cached files and fetch again any that no longer match.")
@_secrets_option
@_errors_to_one_line
def fetch(directory: Path, refresh: bool, verify: bool, secrets_dir: Path | None) -> None:
    """Fetch the bundle's model_cache, weights and external_data into the cache ahead of time."""
    _fetch(directory, refresh=refresh, verify=verify, secrets_dir=secrets_dir)


def _fetch(directory: Path, *, refresh: bool = False, verify: bool = False, secrets_dir: Path | None = None) -> None:
    from kingpost.config import load_config
    from kingpost.weights import cache_root, fetch_bundle
    from kingpost.weights.progress import weights_progress

    _install_progress()
    fetched = fetch_bundle(directory, load_config(directory), secrets_dir=secrets_dir, refresh=refresh,
                           verify=verify, progress=weights_progress())
    if not fetched:
        click.echo(f"{directory}: declares no model_cache, weights or external_data; nothing to fetch.")
    for item in fetched:
        size = sum(e.size for e in item.entries)
        state = "cached" if item.cached else "fetched"
        click.echo(f"{state:<8} {item.source.key}: {item.source.url} ({len(item.entries)} file(s), {_size(size)}) "
                   f"-> {item.source.mount}")
    if fetched:
        click.echo(f"cache    {cache_root()}")


def _install_progress() -> None:
    """A download progress bar on a terminal only."""
    if sys.stderr.isatty():
        from kingpost.weights.progress import Bar, install

        install(Bar(sys.stderr))


@main.command()
@click.argument("directory", type=BUNDLE)
@click.option("--image", default=None, help="The image to run (default: kingpost image's tag, kingpost-<name>:latest).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the manifests to this file (default: stdout).")
@click.option("--kserve", is_flag=True,
              help="Write a KServe InferenceService instead of Deployment, Service, HPA and PDB.")
@click.option("--min-replicas", type=click.IntRange(min=1), default=defaults.K8S_MIN_REPLICAS, show_default=True)
@click.option("--max-replicas", type=click.IntRange(min=1), default=defaults.K8S_MAX_REPLICAS, show_default=True)
@click.option("--autoscale-on", type=click.Choice(["cpu", "queue"]), default="cpu", show_default=True,
              help="The HPA's metric: CPU utilization, or kingpost_queue_depth per pod (needs a metrics adapter).")
@click.option("--startup-timeout", "startup_s", type=click.IntRange(min=1), default=defaults.K8S_STARTUP_S,
              show_default=True,
              help="Seconds the model may take to load before Kubernetes restarts the container.")
@_errors_to_one_line
def k8s(directory: Path, image: str | None, out: Path | None, kserve: bool, min_replicas: int, max_replicas: int,
        autoscale_on: str, startup_s: int) -> None:
    """Write Kubernetes manifests for the bundle (Deployment, Service, HPA, PDB; or --kserve)."""
    from kingpost.deploy.k8s import write

    text = write(directory, out, image=image, kserve=kserve, min_replicas=min_replicas, max_replicas=max_replicas,
                 autoscale_on=autoscale_on, startup_s=startup_s)
    if out is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"Wrote {out}. Apply it with: kubectl apply -f {out}", err=True)


@main.command()
@click.argument("directory", type=BUNDLE)
@click.option("--rebuild", is_flag=True, help="Delete and build the environment again.")
@click.option("--clear", is_flag=True, help="Delete the environment.")
@click.option("--python", "python", default=None, metavar="VERSION",
              help="The Python (3.11, py311) instead of the bundle's python_version.")
@click.option("--fetch", "fetch_weights", is_flag=True,
              help="Also fetch the bundle's model_cache, weights and external_data (as kingpost fetch).")
@_errors_to_one_line
def env(directory: Path, rebuild: bool, clear: bool, python: str | None, fetch_weights: bool) -> None:
    """Show (or rebuild, or clear) the isolated environment of a bundle."""
    from kingpost._progress import Progress
    from kingpost.isolated.env import env_command

    if rebuild:
        with Progress(sys.stdout) as progress:
            env_command(directory, rebuild=rebuild, clear=clear, echo=progress, python=python)
    else:
        env_command(directory, rebuild=rebuild, clear=clear, echo=click.echo, python=python)
    if fetch_weights:
        _fetch(directory)


@main.command()
@click.argument("directories", nargs=-1, required=True, type=BUNDLE, metavar="DIRECTORY")
@click.option("--replicas", type=click.IntRange(min=1), default=None, help="Fixed number of replicas.")
@click.option("--autoscale", default=None, metavar="MIN:MAX", help="Autoscale between MIN and MAX replicas.")
@click.option("--address", default=None, help="Address of a running Ray cluster (default: start a local one).")
@click.option("--host", default=defaults.HOST, show_default=True, help="Address Serve's HTTP front door binds.")
@click.option("--port", default=defaults.RAY_PORT, show_default=True, type=int, help="Port of Serve's HTTP front door.")
@click.option("--ship/--no-ship", default=None,
              help="Send the bundle's files with the deployment (default: only to a remote cluster).")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Seconds to wait for the cluster and the replicas to come up.")
@click.option("--ingress", default=None, metavar="haproxy|proxy",
              help="How requests reach the replicas of a local cluster (default: haproxy where Ray has it).")
@_secrets_option
@_errors_to_one_line
def ray(directories: tuple[Path, ...], replicas: int | None, autoscale: str | None, address: str | None, host: str,
        port: int, ship: bool | None, timeout_s: float | None, ingress: str | None, secrets_dir: Path | None) -> None:
    """Deploy the bundle on Ray Serve and run until SIGINT/SIGTERM."""
    directory = _one_bundle("ray", directories)
    if replicas is not None and autoscale is not None:
        _fail("give either --replicas or --autoscale, not both.", 2)
    from kingpost.deploy.ray import main as ray_main

    extra: dict[str, Any] = {} if timeout_s is None else {"timeout_s": timeout_s}
    sys.exit(ray_main(directory, replicas=replicas, autoscale=autoscale, address=address, host=host, port=port,
                      ship=ship, secrets_dir=secrets_dir, ingress=ingress, echo=lambda m: click.echo(m, err=True),
                      **extra))


def _one_bundle(command: str, directories: tuple[Path, ...]) -> Path:
    """The one bundle of a command that takes one (several are served together by ``kingpost serve``)."""
    if len(directories) > 1:
        _fail(f"kingpost {command} takes one bundle directory, found {len(directories)}; serve several "
              f"together with 'kingpost serve {' '.join(map(str, directories))}'.", 2)
    return directories[0]


def _run_isolated(directory: Path, python: str | None = None) -> None:
    """Re-run this very command inside the bundle's environment, without --isolated (or --python)."""
    from kingpost._progress import Progress
    from kingpost.isolated.env import ensure, environment, run_isolated

    with Progress() as progress:  # build (or find) the environment with a live line, then hand over
        ensure(environment(directory, python), echo=progress)
    argv: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--python":
            skip = True
        elif arg != "--isolated" and not arg.startswith("--python="):
            argv.append(arg)
    sys.exit(run_isolated(directory, argv, echo=lambda m: click.echo(m, err=True), python=python))


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
