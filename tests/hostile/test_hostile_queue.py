"""Clients that queue for predict and leave: they leave the queue at once, not when a slot frees.

Bound stated here: 200 queued requests (50 KB bodies) whose clients reset their connections are
out of the queue (``kingpost_queue_depth`` 0, 200 lines of 499 in the access log) within 2 s, while
predict is still held by another request; a live client is then queued, not refused by
``max_queue``, and answered once the slot frees. (The old server kept them queued until the slot
freed: a live client got 503 for as long.)
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hostile_http import PREDICT, eventually, head

from serving import Server, in_background

pytestmark = pytest.mark.timeout(120)

LEAVERS = 200


def _depth(server: Server) -> float:
    found = re.search(r"^kingpost_queue_depth (\S+)$", server.get("/metrics").text, re.M)
    assert found
    return float(found[1])


def test_abandoned_queued_requests_leave_the_queue_at_once(serve: Callable[..., Server],
                                                           copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    server = serve(copy_bundle("server_gate", runtime={"max_queue": LEAVERS}))
    gate, log = tmp_path / "gate", tmp_path / "log"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        holder = in_background(lambda: client.post(PREDICT, json={"tag": "a", "gate": str(gate), "log": str(log)}))
        server.wait_until(lambda: log.exists() and "start a" in log.read_text(), "predict a to start")

        leavers = []
        body = json.dumps({"tag": "leaver", "pad": "x" * 50_000}).encode()
        for _ in range(LEAVERS):
            sock = socket.create_connection((server.host, server.port), timeout=10)
            sock.sendall(head("POST", PREDICT, "localhost", "Content-Type: application/json", body=body))
            leavers.append(sock)
        eventually(lambda: _depth(server) == LEAVERS, 20, f"{LEAVERS} requests to queue")
        assert client.post(PREDICT, json={"tag": "refused"}).status_code == 503  # max_queue is full

        for sock in leavers:  # reset, as a client killed mid-request would
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        left = time.monotonic()
        eventually(lambda: _depth(server) == 0, 2, "the abandoned requests to leave the queue")
        assert time.monotonic() - left < 2
        server.wait_for_stderr(r'"POST /v1/models/model:predict" 499 ', count=LEAVERS, timeout=5)
        assert "start a" in log.read_text() and "end a" not in log.read_text()  # the slot is still held

        live = in_background(lambda: client.post(PREDICT, json={"tag": "live"}))
        eventually(lambda: _depth(server) == 1, 5, "the live request to queue")
        gate.touch()
        assert holder().json()["tag"] == "a"
        assert live().json()["tag"] == "live"
    assert "leaver" not in log.read_text()  # no abandoned request ever reached predict
