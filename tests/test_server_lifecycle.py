"""The server's life: loading, ready, unhealthy, failed; draining on SIGTERM/SIGINT; --workers.

Models wait on gate files the test creates (tests/bundles/server_gate, server_gated_load,
server_load_fails), so each step is ordered by the test, not by timing.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving import Server, in_background

pytestmark = pytest.mark.timeout(90)

PREDICT = "/v1/models/model:predict"
READY = "/v1/models/model"


def test_readiness_follows_loading_and_is_healthy(serve: Callable[..., Server], copy_bundle: Callable[..., Path],
                                                  tmp_path: Path) -> None:
    gate, sick = tmp_path / "gate", tmp_path / "sick"
    server = serve(copy_bundle("server_gated_load", model_metadata={"gate": str(gate), "sick": str(sick)}),
                   wait="live")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get(READY)  # load() is blocked on the gate
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "loading" in response.json()["error"]

        response = client.post(PREDICT, json=[1])
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert set(response.json()) == {"error"}
        assert client.get("/").status_code == 200  # alive all along

        gate.touch()
        assert server.wait_status(READY, 200).json()["ready"] is True
        assert client.post(PREDICT, json=[1]).json() == [1]

        sick.touch()
        response = client.get(READY)
        assert response.status_code == 503
        assert "unhealthy" in response.json()["error"]

        sick.unlink()
        assert client.get(READY).status_code == 200


def test_a_load_failure_exits_non_zero_with_the_reason(serve: Callable[..., Server],
                                                       copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    server = serve(copy_bundle("server_load_fails", model_metadata={"gate": str(gate)}), wait="live")
    assert server.get(READY).status_code == 503  # still loading

    # A request whose body is half sent keeps the server up while it shuts down, so the test can
    # ask it something after the failure, deterministically.
    body = b'{"after": "the failure"}'
    with socket.create_connection((server.host, server.port), timeout=30) as held:
        held.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])
        gate.touch()
        # Between the failure and the shutdown readiness says 500 with the reason; the window is
        # short (the server exits on its own), so every answer is checked but none is required.
        answers: list[httpx.Response] = []
        while True:
            try:
                answers.append(server.get(READY))
            except OSError:
                break  # shutting down: the listening socket is closed
        assert {a.status_code for a in answers} <= {500, 503}
        for answer in answers:
            if answer.status_code == 500:
                assert "weights.bin is missing from data/" in answer.json()["error"]

        assert server.returncode is None  # still up: it drains the half-sent request
        held.sendall(body[5:])
        status, response = read_response(held)
    assert status == 503
    assert "the model failed to load" in response["error"]
    assert "weights.bin is missing from data/" in response["error"]

    assert server.wait() == 1
    stderr = server.stderr()
    assert "error: the model failed to load:" in stderr
    assert "FileNotFoundError: weights.bin is missing from data/" in stderr


def test_sigterm_while_loading_exits_without_waiting_for_load(serve: Callable[..., Server],
                                                              copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    # load() waits for a gate that never opens (its own safety net is 60 s): a stop request must
    # not wait for it, as it would not wait for a model downloading its weights.
    gate, sick = tmp_path / "gate", tmp_path / "sick"
    server = serve(copy_bundle("server_gated_load", model_metadata={"gate": str(gate), "sick": str(sick)}),
                   wait="live")
    assert server.get(READY).status_code == 503
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=20) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_drains_the_request_in_flight_then_exits_0(serve: Callable[..., Server], tmp_path: Path,
                                                           sig: int) -> None:
    server = serve("server_gate")
    gate, log = tmp_path / "gate", tmp_path / "log"
    client = httpx.Client(base_url=server.url, timeout=60)
    answer = in_background(lambda: client.post(PREDICT, json={"tag": "slow", "gate": str(gate), "log": str(log)}))
    server.wait_until(lambda: log.exists() and "start slow" in log.read_text(), "predict to start")

    server.send_signal(sig)
    server.wait_closed()  # it has begun to shut down: new connections are refused
    assert server.returncode is None  # ... and waits for the request in flight
    gate.touch()

    response = answer()
    assert response.status_code == 200
    assert response.json() == {"tag": "slow", "pid": server.pid}
    assert server.wait() == 0
    assert log.read_text().splitlines() == [f"start slow {server.pid}", f"end slow {server.pid}"]
    client.close()


def test_two_workers_both_answer_and_both_drain_on_sigterm(serve: Callable[..., Server],
                                                           copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    # Enough predict slots that every request starts predict at once, whichever worker takes it.
    server = serve(copy_bundle("server_gate", runtime={"predict_concurrency": 32}), "--workers", "2")
    gate, log = tmp_path / "gate", tmp_path / "log"
    # No keep-alive: a fresh connection each time, so the kernel may hand it to either worker.
    client = httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0))

    def predict(tag: str, **extra: str) -> httpx.Response:
        return client.post(PREDICT, json={"tag": tag, **extra})

    pids: set[int] = set()
    for i in range(500):
        response = predict(f"probe-{i}")
        assert response.status_code == 200
        assert response.json()["tag"] == f"probe-{i}"
        pids.add(response.json()["pid"])
        if len(pids) == 2:
            break
    assert len(pids) == 2, "only one worker ever answered"
    assert server.pid not in pids  # the supervisor serves nothing itself

    # Hold one predict in flight in each worker, then SIGTERM the supervisor.
    answers: dict[str, Callable[[], httpx.Response]] = {}
    holding: set[int] = set()
    for i in range(32):
        tag = f"held-{i}"
        answers[tag] = in_background(lambda tag=tag: predict(tag, gate=str(gate), log=str(log)))
        line = server.wait_until(lambda tag=tag: _line(log, f"start {tag} "), f"predict {tag} to start")
        holding.add(int(line.split()[-1]))
        if holding == pids:
            break
    assert holding == pids

    server.send_signal(signal.SIGTERM)
    server.wait_closed()
    assert server.returncode is None
    gate.touch()
    for tag, answer in answers.items():
        response = answer()
        assert response.status_code == 200
        assert response.json()["tag"] == tag
    assert server.wait() == 0
    client.close()


def test_with_workers_a_load_failure_stops_them_all_and_exits_non_zero(serve: Callable[..., Server],
                                                                       copy_bundle: Callable[..., Path],
                                                                       tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.touch()  # fail at once
    server = serve(copy_bundle("server_load_fails", model_metadata={"gate": str(gate)}), "--workers", "2",
                   wait="bound")
    assert server.wait() == 1
    stderr = server.stderr()
    assert "error: the model failed to load:" in stderr
    assert "weights.bin is missing from data/" in stderr


# -- helpers ------------------------------------------------------------------------------------------


def read_response(sock: socket.socket) -> tuple[int, Any]:
    """Read one HTTP answer with a Content-Length; return its status and JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed mid-answer"
        body += chunk
    return int(lines[0].split()[1]), json.loads(body)


def _line(path: Path, prefix: str) -> str | None:
    if not path.exists():
        return None
    return next((line for line in path.read_text().splitlines() if line.startswith(prefix)), None)
