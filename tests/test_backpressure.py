"""Backpressure over HTTP: a bounded queue answers 503 at once, and nothing accepted is lost."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from serving import Server, in_background

pytestmark = pytest.mark.timeout(120)

PREDICT = "/v1/models/model:predict"


def _metric(server: Server, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", server.get("/metrics").text, re.M)
    assert found, name
    return float(found[1])


def test_with_max_queue_4_the_6th_request_gets_503_and_the_5_accepted_all_answer(
        serve: Callable[..., Server], copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    server = serve(copy_bundle("server_gate", runtime={"max_queue": 4}), "--no-access-log")
    gate, log = tmp_path / "gate", tmp_path / "log"
    with httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=16)) as client:
        first = in_background(lambda: client.post(PREDICT, json={"tag": "r1", "gate": str(gate), "log": str(log)}))
        server.wait_until(lambda: log.exists() and "start r1" in log.read_text(), "r1's predict to start")
        queued = [in_background(lambda tag=f"r{i}": client.post(PREDICT, json={"tag": tag})) for i in range(2, 6)]
        server.wait_until(lambda: _metric(server, "kingpost_queue_depth") == 4, "4 requests to wait for predict")

        refused = client.post(PREDICT, json={"tag": "r6"})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == {"error": "4 requests are already waiting for predict (runtime.max_queue is 4); "
                                           "retry shortly."}
        assert _metric(server, "kingpost_rejected_total") == 1

        gate.touch()
        answers = [first(), *(q() for q in queued)]
        assert [a.status_code for a in answers] == [200] * 5
        assert [a.json()["tag"] for a in answers] == ["r1", "r2", "r3", "r4", "r5"]
        assert client.post(PREDICT, json={"tag": "r7"}).json()["tag"] == "r7"  # and it keeps serving
