"""Many requests at once over HTTP: answers go to the right client, the predict lock holds, a
client that leaves before its predict costs no predict, and a full queue says 503.

Ordering comes from barriers, gate files and the server's own counters, never from sleeps.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving import Server, in_background

pytestmark = pytest.mark.timeout(90)

PREDICT = "/v1/models/model:predict"


def test_2000_requests_at_concurrency_64_each_get_their_own_answer(serve: Callable[..., Server]) -> None:
    # 64 threads, each with its own keep-alive connection (the standard library's client: httpx
    # spends ~5 ms of CPU per request at this concurrency, which would make this test the client's
    # benchmark). Each request carries a unique tag and a body that depends on it.
    server = serve("server_echo", "--no-access-log")
    total, concurrency = 2000, 64
    answers: dict[int, tuple[int, Any]] = {}
    failures: list[BaseException] = []

    def client(tags: range) -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        try:
            for tag in tags:
                body = json.dumps({"tag": tag, "body": f"request-{tag}" * (tag % 7)})
                conn.request("POST", PREDICT, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                answers[tag] = (response.status, json.loads(response.read()))
        except BaseException as exc:
            failures.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(range(k, total, concurrency),)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[:3]
    assert sorted(answers) == list(range(total))
    for tag, (status, body) in answers.items():
        assert status == 200, body
        assert body["echo"] == {"tag": tag, "body": f"request-{tag}" * (tag % 7)}
    metrics = server.get("/metrics").text
    assert re.search(rf'^kingpost_requests_total\{{route="predict",status="200"\}} {total}$', metrics, re.M)


@pytest.mark.parametrize("slots", [1, 2])
def test_predict_lock_over_http(serve: Callable[..., Server], copy_bundle: Callable[..., Path], slots: int) -> None:
    """With N slots at most N predicts ever run at once, while preprocesses overlap a running predict.

    tests/bundles/server_lock: a "hold" predict runs until 8 "overlap" requests have all been inside
    preprocess at once (a barrier of 8), then gives any other predict time to join it. With one
    slot none can (max_predicts 1); with two, one does (max_predicts 2), so the counter can fail.
    """
    parties = 8
    bundle = copy_bundle("server_lock", runtime={"predict_concurrency": slots},
                         model_metadata={"parties": parties, "linger_s": 0.5 if slots == 1 else 30})
    server = serve(bundle)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            requests = [{"role": "hold"}] + [{"role": "overlap", "tag": i} for i in range(parties)]
            return await asyncio.gather(*(client.post(PREDICT, json=r) for r in requests))

    hold, *overlaps = asyncio.run(run())
    assert hold.status_code == 200, hold.text
    assert [r.status_code for r in overlaps] == [200] * parties, [r.text for r in overlaps]
    assert sorted(r.json()["tag"] for r in overlaps) == list(range(parties))
    # All the preprocesses were inside the barrier at once while one predict (the hold) ran ...
    assert [r.json()["predicting_at_barrier"] for r in overlaps] == [1] * parties
    # ... and predicts never ran more than `slots` at once.
    final = httpx.post(server.url + PREDICT, json={"role": "last"}, timeout=30).json()
    assert final["max_predicts"] == slots


def test_a_client_that_leaves_before_its_predict_is_dropped(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve("server_gate")
    gate, log = tmp_path / "gate", tmp_path / "log"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        # A holds the only predict slot until the gate opens.
        holder = in_background(lambda: client.post(PREDICT, json={"tag": "a", "gate": str(gate), "log": str(log)}))
        server.wait_until(lambda: log.exists() and "start a" in log.read_text(), "predict a to start")

        # B is preprocessed and waits for the slot; then its client goes away.
        body = f'{{"tag": "b", "log": "{log}"}}'.encode()
        with socket.create_connection((server.host, server.port), timeout=30) as leaver:
            leaver.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            server.wait_until(lambda: _gauge(server, "kingpost_queue_depth") == 1, "b to wait for predict")
        # B's client is gone. A round trip on a fresh connection makes sure the server has read
        # the close before A's predict ends: the event loop handles events in order.
        assert server.get("/").status_code == 200

        gate.touch()
        assert holder().json()["tag"] == "a"
        # B's turn comes next: the server asks whether its client is still there, and drops it.
        server.wait_for_stderr(r'"POST /v1/models/model:predict" 499 ')
        assert client.post(PREDICT, json={"tag": "c", "log": str(log)}).json()["tag"] == "c"

    pid = server.pid
    assert log.read_text().splitlines() == [f"start a {pid}", f"end a {pid}", f"start c {pid}", f"end c {pid}"]


def test_a_full_queue_answers_503_with_retry_after(serve: Callable[..., Server], copy_bundle: Callable[..., Path],
                                                   tmp_path: Path) -> None:
    server = serve(copy_bundle("server_gate", runtime={"max_queue": 1}))
    gate, log = tmp_path / "gate", tmp_path / "log"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        holder = in_background(lambda: client.post(PREDICT, json={"tag": "a", "gate": str(gate), "log": str(log)}))
        server.wait_until(lambda: log.exists() and "start a" in log.read_text(), "predict a to start")
        waiter = in_background(lambda: client.post(PREDICT, json={"tag": "b"}))
        server.wait_until(lambda: _gauge(server, "kingpost_queue_depth") == 1, "b to wait for predict")

        response = client.post(PREDICT, json={"tag": "c"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "runtime.max_queue" in response.json()["error"]

        gate.touch()
        assert holder().json()["tag"] == "a"
        assert waiter().json()["tag"] == "b"
        assert client.post(PREDICT, json={"tag": "d"}).json()["tag"] == "d"


# -- helpers ------------------------------------------------------------------------------------------


def _gauge(server: Server, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", server.get("/metrics").text, re.M)
    assert found, name
    return float(found[1])
