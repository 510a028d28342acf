"""The servers under comparison. Adding one is one entry in SERVERS.

A Server turns (case, port) into a Launch: the command line, extra environment and working
directory of a process that serves the case on 127.0.0.1:port (or 0.0.0.0 inside the harness's
private network namespace). `unavailable` says in one sentence why a server cannot run a case, so
the harness skips it instead of failing (e.g. kingpost before its `serve` command exists).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import truss_context
from .cases import Case
from .paths import APPS, DEV_PYTHON, REPO, VENVS, venv_python

TRUSS_PATHS = ("/v1/models/model:predict", "/v1/models/model")


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO


@dataclass(frozen=True)
class Server:
    name: str
    note: str  # how it is configured, printed with the results
    predict_path: str
    ready_path: str
    launch: Callable[[Case, int], Launch]
    check: Callable[[Case], str | None]  # None when it can serve the case, else why not
    needs_netns: bool = False  # binds 0.0.0.0 whatever it is told

    def unavailable(self, case: Case, in_netns: bool) -> str | None:
        if self.needs_netns and not in_netns:
            return "binds 0.0.0.0, so it only runs inside the private network namespace"
        return self.check(case)


# --- kingpost -------------------------------------------------------------------------------

_kingpost_checked: dict[str, str | None] = {}


def _kingpost_check(case: Case) -> str | None:
    if "serve" not in _kingpost_checked:
        try:
            proc = subprocess.run(
                [str(DEV_PYTHON), "-m", "kingpost", "serve", "--help"],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=REPO,
            )
            reason = (
                None
                if proc.returncode == 0
                else (
                    "`python -m kingpost serve --help` failed: "
                    + ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]
                )
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"`python -m kingpost serve --help` did not run: {exc}"
        _kingpost_checked["serve"] = reason
    return _kingpost_checked["serve"]


def _bundle_check(bundle: Path) -> str | None:
    return None if (bundle / "config.yaml").is_file() else f"no bundle at {bundle}"


def kingpost(name: str = "kingpost", extra: tuple[str, ...] = (), note: str = "",
             paths: tuple[str, str] = TRUSS_PATHS, source: str | None = None) -> Server:
    """`kingpost serve` of the case's bundle for this server (Case.bundle_for(name)).

    ``source`` names an environment variable holding another checkout's ``src/`` (put first on
    PYTHONPATH): the same command from an older commit, for before/after figures in one run.
    """

    def launch(case: Case, port: int) -> Launch:
        argv = [
            str(DEV_PYTHON),
            "-m",
            "kingpost",
            "serve",
            str(case.bundle_for(name)),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra,
            *case.server_args.get(name, ()),
        ]
        return Launch(argv, {"PYTHONPATH": os.environ[source]} if source else {})

    def check(case: Case) -> str | None:
        if source and not os.environ.get(source):
            return f"set {source} to another checkout's src/ (e.g. a worktree of the commit to compare with)"
        return _kingpost_check(case) or _bundle_check(case.bundle_for(name))

    note = note or (f"`kingpost serve {' '.join(extra)}`" if extra else "`kingpost serve` defaults")
    return Server(name, note, *paths, launch, check)


# --- bare ASGI ------------------------------------------------------------------------------


def _app_check(server: str, python: Path) -> Callable[[Case], str | None]:
    def check(case: Case) -> str | None:
        if server not in case.apps:
            return f"the case has no {server} app (Case.apps)"
        if not python.exists():
            return f"{python} is missing; run `python bench/run.py --setup`"
        return None

    return check


def _bare_launch(case: Case, port: int) -> Launch:
    return Launch(
        [
            str(DEV_PYTHON),
            str(APPS / "bare.py"),
            "--case",
            case.apps["bare"],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    )


# --- Truss's own model server ---------------------------------------------------------------


def _truss_check(case: Case) -> str | None:
    if not venv_python("truss-server").exists():
        return "bench/.venvs/truss-server is missing; run `python bench/run.py --setup`"
    if not truss_context.context_dir(case).is_dir():
        return f"no Truss build context for {case.name}; run `python bench/run.py --setup`"
    return _bundle_check(case.bundle)


def _truss_launch(case: Case, port: int) -> Launch:
    ctx = truss_context.context_dir(case)
    env = {
        "PYTHONPATH": os.pathsep.join([str(ctx), str(ctx / "packages")]),
        "INFERENCE_SERVER_PORT": str(port),
    }
    return Launch([str(venv_python("truss-server")), "server/main.py"], env, ctx)


# --- LitServe -------------------------------------------------------------------------------


def litserve(name: str = "litserve", note: str = "", extra: tuple[str, ...] = (), app: str = "") -> Server:
    app = app or name  # the key of case.apps naming the LitAPI

    def launch(case: Case, port: int) -> Launch:
        return Launch(
            [
                str(venv_python("litserve")),
                str(APPS / "litserve_app.py"),
                "--case",
                case.apps[app],
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *extra,
                *case.server_args.get(name, ()),
            ]
        )

    return Server(
        name,
        "LitServer defaults (1 inference worker process, 1 API server process), "
        "log_level=warning (no access log)" + note,
        "/predict",
        "/health",
        launch,
        _app_check(app, venv_python("litserve")),
    )


# --- Seldon MLServer -------------------------------------------------------------------------

V2_PATHS = ("/v2/models/echo/infer", "/v2/health/ready")


def _mlserver_check(case: Case) -> str | None:
    if not venv_python("mlserver").exists():
        return "bench/.venvs/mlserver is missing; run `python bench/run.py --setup`"
    return None if case.bundle_dir == "echo" else "MLServer has an echo runtime only (apps/mlserver/echo)"


def _mlserver_launch(case: Case, port: int) -> Launch:
    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    # One process (parallel_workers 0, in apps/mlserver/settings.json), its defaults otherwise; its
    # gRPC and metrics servers need ports of their own.
    env = {"MLSERVER_HOST": "127.0.0.1", "MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(free()),
           "MLSERVER_METRICS_PORT": str(free())}
    return Launch([str(VENVS / "mlserver" / "bin" / "mlserver"), "start", "."], env, APPS / "mlserver")


SERVERS: dict[str, Server] = {
    server.name: server
    for server in [
        kingpost(),
        kingpost("kingpost-quiet", ("--no-access-log",)),  # as bare and litserve: no access log
        kingpost("kingpost-w2", ("--workers", "2")),  # the workers case
        # Before/after in one run: `git worktree add /tmp/base COMMIT; KINGPOST_BASE_SRC=/tmp/base/src`.
        kingpost("kingpost-base", note="`kingpost serve` defaults, from $KINGPOST_BASE_SRC",
                 source="KINGPOST_BASE_SRC"),
        # The batched case's runtime.batching bundle (Case.server_bundles); elsewhere the case's bundle.
        kingpost("kingpost-batched", note="`kingpost serve` defaults, of the case's batched bundle"),
        kingpost("kingpost-base-batched", note="`kingpost serve` defaults, of the case's batched bundle, "
                 "from $KINGPOST_BASE_SRC", source="KINGPOST_BASE_SRC"),
        Server(
            "bare",
            "bare ASGI + orjson on uvicorn --loop uvloop --http httptools, no access log",
            *TRUSS_PATHS,
            _bare_launch,
            _app_check("bare", DEV_PYTHON),
        ),
        Server(
            "truss",
            "truss server/main.py from `truss image build-context` (h11, INFO logs)",
            *TRUSS_PATHS,
            _truss_launch,
            _truss_check,
            needs_netns=True,
        ),
        litserve(note="; pipeline with enable_async=True"),
        litserve("litserve-sync", "; pipeline as a plain sync LitAPI (no enable_async)"),
        litserve("litserve-zmq", "; fast_queue=True (ZeroMQ)", ("--fast-queue",), app="litserve"),
        kingpost("kingpost-v2", note="`kingpost serve` defaults, V2 infer", paths=V2_PATHS),
        Server("mlserver", "MLServer 1.x `mlserver start`, parallel_workers 0 (one process), defaults otherwise "
               "(access log on)", *V2_PATHS, _mlserver_launch, _mlserver_check),
        litserve("litserve-batched", "; LitAPI(max_batch_size=32, batch_timeout=0.005) with batch/unbatch"),
    ]
}
DEFAULT_SERVERS = ("kingpost", "bare", "truss", "litserve")
