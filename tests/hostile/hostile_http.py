"""Raw-socket helpers for the hostile tests: what a well-behaved client library would not send."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREDICT = "/v1/models/model:predict"
READY = "/v1/models/model"


def memory_kb(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (``VmRSS``) or its peak (``VmHWM``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def read_answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP answer with a Content-Length (or up to EOF); return status, headers, body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        body += chunk
    return status, headers, body


def closed_within(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes ``sock`` within ``timeout`` s (reading and dropping what it sends)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


def head(method: str, path: str, host: str, *extra: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *extra]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class LatencyProbe:
    """A client that predicts on a fresh connection every ``every`` s on a thread; keeps each latency."""

    def __init__(self, host: str, port: int, every: float = 0.05) -> None:
        self.host, self.port, self.every = host, port, every
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        body = json.dumps({"probe": 1})
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                conn.request("POST", PREDICT, body, {"Content-Type": "application/json"})
                answer = conn.getresponse()
                answer.read()
                conn.close()
                if answer.status != 200:
                    self.failures.append(f"status {answer.status}")
            except OSError as exc:
                self.failures.append(repr(exc))
            self.latencies.append(time.monotonic() - start)
            self._stop.wait(self.every)


def eventually(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


def serve_copy(tmp_path_factory: Any, bundle: str, runtime: dict[str, Any] | None = None,
               drop: tuple[str, ...] = ()) -> Any:
    """Start a server on a copy of ``tests/bundles/<bundle>`` whose ``runtime`` gets ``runtime`` merged
    in and loses the keys in ``drop``; for module-scoped fixtures (the ``serve`` fixture is per test)."""
    import shutil

    import yaml

    from conftest import _merge, bundle_path
    from serving import start

    target = tmp_path_factory.mktemp(bundle) / bundle
    shutil.copytree(bundle_path(bundle), target)
    config = yaml.safe_load((target / "config.yaml").read_text()) or {}
    config["runtime"] = _merge(config.get("runtime") or {}, runtime or {})
    for key in drop:
        config["runtime"].pop(key, None)
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    return start(target, stderr_dir=target.parent)
