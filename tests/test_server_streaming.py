"""A generator predict over HTTP: chunked by default, SSE on request, gathered for plain JSON.

Every test runs against a sync generator (tests/bundles/server_stream, driven on a predict
thread) and an async one (server_stream_async, on the event loop). Each yields its first chunk,
then blocks on a gate file that the test creates only after it has read that chunk: the first
chunk provably left the server before the generator ended.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import bundle_path
from serving import Server, serving

pytestmark = pytest.mark.timeout(60)

PREDICT = "/v1/models/model:predict"


@pytest.fixture(scope="module", params=["server_stream", "server_stream_async"], ids=["sync", "async"])
def stream_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serving(bundle_path(request.param)) as server:
        yield server


@pytest.fixture(scope="module")
def client(stream_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stream_server.url, timeout=30) as client:
        yield client


def test_first_chunk_arrives_before_the_generator_ends(client: httpx.Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    payload = {"chunks": ["Hello", ", ", "world"], "gates": [str(gate)]}
    with client.stream("POST", PREDICT, json=payload) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        parts = response.iter_raw()
        assert next(parts) == b"Hello"  # the generator is still blocked on the gate
        gate.touch()
        rest = b"".join(parts)
    assert rest == b", world"


def test_accept_json_gathers_the_chunks_into_one_answer(client: httpx.Client) -> None:
    response = client.post(PREDICT, json={"chunks": ["a", "b", "c"]}, headers={"accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == "abc"


def test_accept_event_stream_gives_sse_frames(client: httpx.Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    payload = {"chunks": ["one", "two\nlines", "three"], "gates": [str(gate)]}
    with client.stream("POST", PREDICT, json=payload, headers={"accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        parts = response.iter_raw()
        assert next(parts) == b"data: one\n\n"
        gate.touch()
        rest = b"".join(parts)
    assert rest == b"data: two\ndata: lines\n\ndata: three\n\n"


def test_a_client_that_leaves_mid_stream_stops_the_generator_and_frees_the_slot(
        stream_server: Server, client: httpx.Client, tmp_path: Path) -> None:
    gates = [tmp_path / f"gate-{i}" for i in range(3)]
    log = tmp_path / "log"
    payload = {"chunks": ["one", "two", "three", "four"], "gates": [str(g) for g in gates], "log": str(log)}
    answered = _predicts_answered(stream_server)
    with httpx.Client(base_url=stream_server.url, timeout=30) as leaver, \
            leaver.stream("POST", PREDICT, json=payload) as response:
        assert next(response.iter_raw()) == b"one"
    # The client is gone. A round trip on a fresh connection makes sure the server has read the
    # close: the loop handles events in order.
    assert stream_server.get("/").status_code == 200

    # Let the generator (which holds the only predict slot) produce one more chunk: the server
    # finds the client gone, at the latest when it would send that chunk, and ends the request.
    gates[0].touch()
    stream_server.wait_until(lambda: _predicts_answered(stream_server) > answered, "the request to end")
    # The generator is closed at the next chunk it produces, if it is not closed already.
    gates[1].touch()
    stream_server.wait_until(lambda: log.read_text().endswith("closed\n"), "the generator to close")
    lines = log.read_text().splitlines()
    # A sync generator is closed at its next chunk; an async one at once, while it waits (issue 16).
    assert lines[0] == "yield one" and lines[-1] == "closed" and "yield three" not in lines
    assert "yield four" not in lines  # gates[2] never opened, and nothing waited on it
    # The slot is free.
    assert client.post(PREDICT, json={"chunks": ["next"]}).content == b"next"


@pytest.mark.parametrize("accept", [None, "text/event-stream", "application/json"])
def test_an_error_before_the_first_chunk_is_a_proper_500(client: httpx.Client, accept: str | None) -> None:
    headers = {"accept": accept} if accept else {}
    response = client.post(PREDICT, json={"chunks": ["x"], "fail": "before"}, headers=headers)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert "predict" in error and "tokenizer" not in error
    assert client.post(PREDICT, json={"chunks": ["still", " up"]}).content == b"still up"


def test_an_error_mid_stream_ends_the_stream_with_an_sse_error_event(client: httpx.Client) -> None:
    response = client.post(PREDICT, json={"chunks": ["x", "never"], "fail": "after"},
                           headers={"accept": "text/event-stream"})
    assert response.status_code == 200  # the status line left with the first chunk
    frames = response.content.split(b"\n\n")
    assert frames[0] == b"data: x"
    assert frames[1].startswith(b"event: error\ndata: ") and b"decoder" not in frames[1]
    assert b"never" not in response.content
    assert client.post(PREDICT, json={"chunks": ["still", " up"]}).content == b"still up"


def _predicts_answered(server: Server) -> int:
    """Predict requests ended, read from /metrics: counted when each ends (the access log may lag 10 ms)."""
    metrics = server.get("/metrics").text
    return sum(int(m[1]) for m in re.finditer(r'^kingpost_requests_total\{route="predict",status="\d+"\} (\d+)$',
                                            metrics, re.M))
