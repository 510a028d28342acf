"""Start Truss's own model server on a compat bundle, for running this suite against Truss.

Not used by CI. ``scripts/truss_compat_against_truss`` runs the HTTP tests of this directory with
``KINGPOST_COMPAT_SERVER=truss`` inside a private network namespace (Truss's server binds
0.0.0.0). The server comes from ``truss image build-context`` (``$TRUSS_BIN``, default
``bench/.venvs/truss/bin/truss`` of the main checkout) and runs on ``$TRUSS_SERVER_PYTHON`` (default
``bench/.venvs/truss-server``, which holds Truss's server requirements), from the context directory
as the image's WORKDIR /app would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

MAIN = Path(os.environ.get("KINGPOST_MAIN", "/work/main"))
TRUSS_BIN = Path(os.environ.get("TRUSS_BIN", MAIN / "bench/.venvs/truss/bin/truss"))
SERVER_PYTHON = Path(os.environ.get("TRUSS_SERVER_PYTHON", MAIN / "bench/.venvs/truss-server/bin/python"))


class TrussServer:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_truss(bundle: Path, workdir: Path, env: dict[str, str] | None = None, timeout: float = 90) -> TrussServer:
    context = workdir / "context"
    subprocess.run([str(TRUSS_BIN), "image", "build-context", str(context), str(bundle)], check=True,
                   capture_output=True, timeout=300)
    port = _free_port()
    log = workdir / "truss-server.log"
    environ = {**os.environ, **(env or {}), "INFERENCE_SERVER_PORT": str(port),
               "PYTHONPATH": os.pathsep.join([str(context), str(context / "packages")])}
    with log.open("wb") as out:
        proc = subprocess.Popen([str(SERVER_PYTHON), "server/main.py"], cwd=context, env=environ, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = TrussServer(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"Truss's server exited ({proc.returncode}):\n{server.stderr()}")
        try:
            if httpx.get(server.url + "/v1/models/model", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"Truss's server did not become ready in {timeout:g} s:\n{server.stderr()}")
