"""A client that disconnects stops its work: an async predict is cancelled, a stream is closed, a
sync predict can tell with kingpost.client_disconnected(); the request counts as 499."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import bundle_path
from serving import Server

BOUND_S = 1.0  # a disconnect must reach the hook within this (the protocol cancels at connection_lost)


def post_and_leave(server: Server, body: dict[str, object], log: Path, *, then_read: int = 0) -> float:
    """POST ``body``, wait until the model logs "started" (and ``then_read`` bytes arrive), hang up.
    Returns the monotonic time of the hang-up."""
    data = json.dumps(body).encode()
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        host = f"{server.host}:{server.port}".encode()
        sock.sendall(b"POST /v1/models/model:predict HTTP/1.1\r\nHost: " + host + b"\r\nContent-Type: application/json"
                     b"\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
        server.wait_until(lambda: log.exists() and "started" in log.read_text(), "the model to start", 10)
        received = b""
        while len(received) < then_read:
            received += sock.recv(4096)
    finally:
        sock.close()
    return time.monotonic()


def logged_at(log: Path, word: str) -> float:
    for line in log.read_text().splitlines():
        if line.startswith(word):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{word!r} not in {log.read_text()!r}")


def count_499(server: Server) -> int:
    found = re.search(r'kingpost_requests_total\{route="predict",status="499"\} (\d+)', server.get("/metrics").text)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("extra", [(), ("--log-format", "json")])
def test_disconnect_cancels_an_async_predict(serve: Callable[..., Server], tmp_path: Path,
                                             extra: tuple[str, ...]) -> None:
    server = serve(bundle_path("cancel_probe"), *extra)
    log = tmp_path / "log"
    left = post_and_leave(server, {"log": str(log), "seconds": 30}, log)
    server.wait_until(lambda: "cancelled" in log.read_text(), "the predict to be cancelled", 5)
    assert logged_at(log, "cancelled") - left < BOUND_S
    assert "finished" not in log.read_text()
    server.wait_until(lambda: count_499(server) == 1, "the 499 to be counted", 5)
    server.wait_for_stderr("499", 5)  # the access line says 499 too
    # The predict slot is free again: the next request is served at once.
    log2 = tmp_path / "log2"
    answer = server_post(server, {"log": str(log2), "seconds": 0.01})
    assert answer == {"slept": 0.01}


def test_disconnect_closes_an_async_stream_at_once(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(bundle_path("cancel_probe"))
    log = tmp_path / "log"
    left = post_and_leave(server, {"log": str(log), "seconds": 30, "stream": True}, log, then_read=1)
    server.wait_until(lambda: "closed" in log.read_text(), "the generator to be closed", 5)
    assert logged_at(log, "closed") - left < BOUND_S


def test_a_sync_predict_sees_the_disconnect(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(bundle_path("cancel_sync_probe"))
    log = tmp_path / "log"
    left = post_and_leave(server, {"log": str(log), "steps": 3000}, log)
    server.wait_until(lambda: "stopped after" in log.read_text(), "predict to notice", 5)
    assert logged_at(log, "stopped after") - left < BOUND_S
    server.wait_until(lambda: count_499(server) == 1, "the 499 to be counted", 5)


def test_a_sync_stream_is_closed_after_the_disconnect(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(bundle_path("cancel_sync_probe"))
    log = tmp_path / "log"
    left = post_and_leave(server, {"log": str(log), "steps": 3000, "stream": True}, log, then_read=1)
    server.wait_until(lambda: "closed" in log.read_text(), "the generator to be closed", 5)
    assert logged_at(log, "closed") - left < BOUND_S


def test_client_disconnected_is_false_outside_a_request() -> None:
    import kingpost

    assert kingpost.client_disconnected() is False


def server_post(server: Server, body: dict[str, object]) -> object:
    import httpx

    response = httpx.post(server.url + "/v1/models/model:predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()
