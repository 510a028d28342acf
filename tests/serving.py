"""Run ``python -m kingpost serve`` as a subprocess for tests, on a free loopback port.

    with serving(bundle_path("echo")) as server:       # waits until readiness answers 200
        httpx.post(server.url + "/v1/models/model:predict", json=[1])
    server.returncode                                   # 0 after a clean drain

The server is started with ``--port 0`` and the port is read from the line it prints once bound,
so two tests never race for a port. stderr goes to a file that :meth:`Server.stderr` reads at any
time. The process is stopped by its PID (SIGTERM, then SIGKILL past a timeout), never by name.
The ``serve`` fixture in ``conftest.py`` wraps :func:`start` and stops whatever a test left running.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx

_BOUND = re.compile(r"kingpost: serving .+ on http://(?P<host>[^\s:]+):(?P<port>\d+)")
Wait = Literal["ready", "live", "bound"]


class ServerExited(AssertionError):
    """The server process ended while a test was waiting for it."""


class Server:
    """One ``kingpost serve`` subprocess: its URL, its stderr, and ways to signal and stop it."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    # -- waiting ----------------------------------------------------------------------------------

    def wait_until(self, check: Callable[[], Any], what: str, timeout: float = 30.0, *,
                   alive: bool = True) -> Any:
        """Poll ``check()`` until it returns something truthy; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if alive and self.proc.poll() is not None:
                raise ServerExited(f"the server exited ({self.proc.returncode}) while waiting for {what}; "
                                   f"stderr:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; stderr:\n{self.stderr()}")
            time.sleep(0.01)

    def wait_for_stderr(self, pattern: str, timeout: float = 30.0, *, count: int = 1) -> list[str]:
        """Wait until ``pattern`` (a regex) matches ``count`` lines of stderr; return the matching lines."""
        regex = re.compile(pattern)

        def matches() -> list[str] | None:
            lines = [line for line in self.stderr().splitlines() if regex.search(line)]
            return lines if len(lines) >= count else None

        found: list[str] = self.wait_until(matches, f"{count} stderr line(s) matching {pattern!r}", timeout,
                                           alive=False)
        return found

    def wait_bound(self, timeout: float = 30.0) -> None:
        found = self.wait_until(lambda: _BOUND.search(self.stderr()), "the 'serving ... on' line", timeout)
        self.host, self.port = found["host"], int(found["port"])

    def get(self, path: str, timeout: float = 10.0) -> httpx.Response:
        """``GET path`` on a fresh connection with the standard library: cheap enough to poll with
        (an ``httpx.Client`` costs a TLS context each). Raises OSError when nothing answers."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
        except http.client.HTTPException as exc:
            raise ConnectionError(f"GET {path}: {exc!r}") from exc
        finally:
            conn.close()

    def wait_status(self, path: str, status: int, timeout: float = 30.0) -> httpx.Response:
        """Poll ``GET path`` until it answers ``status``; return that response."""

        def probe() -> httpx.Response | None:
            try:
                response = self.get(path)
            except OSError:
                return None
            return response if response.status_code == status else None

        response: httpx.Response = self.wait_until(probe, f"GET {path} to answer {status}", timeout)
        return response

    def accepts_connections(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def wait_closed(self, timeout: float = 30.0) -> None:
        """Wait until the listening socket is closed: the server has begun to shut down."""
        self.wait_until(lambda: not self.accepts_connections(), "the server to stop listening", timeout,
                        alive=False)

    # -- stopping ---------------------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit on its own; return its exit status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit within {timeout:g} s; stderr:\n{self.stderr()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process (SIGTERM by default) and wait; SIGKILL it if it does not exit in time."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server and, with --workers, its worker processes (its process group)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start(bundle: str | Path, *args: str, wait: Wait = "ready", timeout: float = 60.0,
          env: dict[str, str] | None = None, stderr_dir: str | Path | None = None) -> Server:
    """Start ``python -m kingpost serve BUNDLE --host 127.0.0.1 --port 0 ARGS...``.

    ``wait`` says how far to wait: ``"bound"`` (the port is known), ``"live"`` (``GET /`` answers
    200) or ``"ready"`` (readiness answers 200: the model is loaded).
    """
    fd, name = tempfile.mkstemp(prefix="kingpost-serve-", suffix=".stderr", dir=stderr_dir)
    os.close(fd)
    stderr_path = Path(name)
    if stderr_dir is None:  # readable until the test process ends, then gone
        atexit.register(stderr_path.unlink, missing_ok=True)
    command = [sys.executable, "-m", "kingpost", "serve", str(bundle), "--host", "127.0.0.1", "--port", "0", *args]
    with stderr_path.open("wb") as err:
        # A process group of its own: a SIGINT meant for pytest does not reach it, and kill() reaches the workers.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True)
    server = Server(proc, stderr_path)
    try:
        server.wait_bound(timeout)
        if wait == "live":
            server.wait_status("/", 200, timeout)
        elif wait == "ready":
            server.wait_status("/v1/models/model", 200, timeout)
    except BaseException:
        server.kill()
        raise
    return server


def in_background(call: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``call`` on a thread; the returned function waits for it and returns its result (or raises)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> Any:
        thread.join(60)
        assert not thread.is_alive(), "the request never finished"
        if "error" in box:
            raise box["error"]
        return box["value"]

    return result


@contextlib.contextmanager
def serving(bundle: str | Path, *args: str, **kwargs: Any) -> Iterator[Server]:
    """:func:`start` a server, yield it, and stop it on the way out (SIGTERM, then SIGKILL)."""
    server = start(bundle, *args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def drain_chunked(sock: socket.socket, at_least: int, timeout: float = 10.0) -> float:
    """Read a chunked answer from ``sock`` to its last chunk (more than ``at_least`` bytes in all);
    the monotonic time it ended."""
    received = 0
    sock.settimeout(timeout)
    while True:
        part = sock.recv(1 << 20)
        assert part, "the server closed the stream early"
        received += len(part)
        if part.endswith(b"0\r\n\r\n") and received > at_least:
            return time.monotonic()
