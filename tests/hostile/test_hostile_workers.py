"""Dead and stuck workers: the supervisor restarts them, and never leaves orphans behind.

Bounds stated here: with ``--workers 2``, a worker killed with SIGKILL is replaced within 10 s while
a client predicting on fresh connections (retrying a failed request once) sees 0 failures; a
supervisor killed with SIGKILL takes its workers with it within 5 s, and the port can be bound
again at once; a predict stuck past ``predict_stuck_s`` (1.5 s here) turns readiness to 503
within 3 s more, back to 200 once predict moves again, and with several workers the stuck worker
is ended and replaced.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hostile_http import PREDICT, READY, eventually

from serving import Server, in_background

pytestmark = pytest.mark.timeout(120)


def _predict_pid(server: Server) -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("POST", PREDICT, json.dumps({"who": 1}), {"Content-Type": "application/json"})
        answer = conn.getresponse()
        assert answer.status == 200
        return int(json.loads(answer.read())["pid"])
    finally:
        conn.close()


def _worker_pids(server: Server, count: int = 2) -> set[int]:
    pids: set[int] = set()
    deadline = time.monotonic() + 30  # the second worker may still be loading its model
    while time.monotonic() < deadline:
        pids.add(_predict_pid(server))
        if len(pids) == count:
            return pids
        time.sleep(0.005)
    raise AssertionError(f"only {pids} answered")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


class RetryingClient:
    """Predict on fresh connections in a loop; a failed request is retried once; count the failures."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.done = self.failed = 0
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for attempt in (1, 2):
                try:
                    self.pids.add(_predict_pid(self.server))
                    break
                except (OSError, AssertionError, http.client.HTTPException, ValueError):
                    if attempt == 2:
                        self.failed += 1
                    time.sleep(0.05)
            self.done += 1
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_killed_worker_is_replaced_while_the_other_serves(serve: Callable[..., Server]) -> None:
    server = serve("server_echo", "--workers", "2")
    first = _worker_pids(server)
    victim = min(first)
    client = RetryingClient(server)
    try:
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        server.wait_for_stderr(r"worker kingpost-worker-\d was killed by signal 9 .* restarting it", timeout=10)
        new = eventually(lambda: client.pids - first, 10, "the replacement worker to answer")
        time.sleep(0.3)
    finally:
        client.stop()
    assert client.failed == 0, f"{client.failed} of {client.done} requests failed twice"
    assert client.done > 20
    assert new and victim not in _worker_pids(server)
    assert server.returncode is None


def test_a_killed_supervisor_takes_its_workers_down(serve: Callable[..., Server]) -> None:
    server = serve("server_echo", "--workers", "2")
    workers = _worker_pids(server)
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    eventually(lambda: not any(_alive(pid) for pid in workers), 5, "the workers to exit")
    with socket.socket() as sock:  # the port is free again: no orphan holds it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((server.host, server.port))


def test_a_stuck_predict_turns_readiness_to_503_and_back(serve: Callable[..., Server],
                                                          copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    server = serve(copy_bundle("server_gate", runtime={"limits": {"predict_stuck_s": 1.5}}))
    gate = tmp_path / "gate"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        held = in_background(lambda: client.post(PREDICT, json={"tag": "stuck", "gate": str(gate)}))
        start = time.monotonic()
        response = server.wait_status(READY, 503, timeout=1.5 + 3)
        assert time.monotonic() - start >= 1.5 - 0.5  # the watchdog looks every bound/4 s
        assert "predict_stuck_s" in response.json()["error"]
        assert server.get("/").status_code == 200  # alive: the orchestrator decides
        gate.touch()
        assert held().json()["tag"] == "stuck"
        server.wait_status(READY, 200, timeout=3)
    server.wait_for_stderr(r"predict has made no progress for more than 1.5 s")


def test_with_workers_a_stuck_worker_is_replaced(serve: Callable[..., Server], copy_bundle: Callable[..., Path],
                                                 tmp_path: Path) -> None:
    server = serve(copy_bundle("server_gate", runtime={"limits": {"predict_stuck_s": 1}}), "--workers", "2",
                   "--grace-period", "1")
    gate = tmp_path / "gate"
    held = in_background(lambda: httpx.post(server.url + PREDICT, json={"tag": "stuck", "gate": str(gate)},
                                            timeout=30))
    server.wait_for_stderr(r"worker kingpost-worker-\d exited with status 3 .* restarting it", timeout=15)
    assert held().status_code == 503  # told the truth as its worker went down, not left hanging
    ok = httpx.post(server.url + PREDICT, json={"tag": "after"}, timeout=10)
    assert ok.json()["tag"] == "after"
    assert server.returncode is None
