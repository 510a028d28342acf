"""A stream's chunks reach the client one by one, as the generator yields them, on every front door;
and a client that reads slowly keeps the predict slot (and the generator) waiting, not the memory.
(Ray Serve's front door: tests/test_ray.py checks each chunk of a trickling stream arrives alone.)

The paced tests use tests/bundles/server_stream (a sync generator on a predict thread) and
server_stream_async (an async generator on the loop): before chunk i it waits for a gate file the
test creates only after it has received chunk i - 1, alone. A front door that coalesced chunks, or
buffered the answer, would block on the gate and fail the test's read timeout instead.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import kingpost
from conftest import bundle_path
from serving import Server, drain_chunked, serving

pytestmark = pytest.mark.timeout(60)

PREDICT = "/v1/models/model:predict"
CHUNKS = ["alpha ", "beta ", "gamma ", "delta"]


def _paced(tmp_path: Path) -> tuple[dict[str, object], list[Path]]:
    gates = [tmp_path / f"gate{i}" for i in range(1, len(CHUNKS))]
    return {"chunks": CHUNKS, "gates": [str(g) for g in gates]}, gates


@pytest.fixture(scope="module", params=["server_stream", "server_stream_async"], ids=["sync", "async"])
def stream_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serving(bundle_path(request.param)) as server:
        yield server


@pytest.mark.parametrize("name", ["server_stream", "server_stream_async"], ids=["sync", "async"])
def test_in_process_chunks_arrive_as_yielded(name: str, tmp_path: Path) -> None:
    payload, gates = _paced(tmp_path)
    bundle = kingpost.load(bundle_path(name))
    try:
        chunks = iter(bundle.predict(payload))
        for i, expected in enumerate(CHUNKS):
            assert next(chunks) == expected  # the generator waits on gate i meanwhile
            if i < len(gates):
                gates[i].touch()
        assert next(chunks, None) is None
    finally:
        bundle.close()


def test_http_chunked_chunks_arrive_as_yielded(stream_server: Server, tmp_path: Path) -> None:
    payload, gates = _paced(tmp_path)
    with httpx.Client(base_url=stream_server.url, timeout=10) as client, \
            client.stream("POST", PREDICT, json=payload) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        parts = response.iter_raw()
        for i, expected in enumerate(CHUNKS):
            assert next(parts) == expected.encode()  # exactly this chunk: the next one is not made yet
            if i < len(gates):
                gates[i].touch()
        assert next(parts, None) is None


def test_sse_events_arrive_as_yielded(stream_server: Server, tmp_path: Path) -> None:
    payload, gates = _paced(tmp_path)
    headers = {"accept": "text/event-stream"}
    with httpx.Client(base_url=stream_server.url, timeout=10) as client, \
            client.stream("POST", PREDICT, json=payload, headers=headers) as response:
        assert response.headers["content-type"] == "text/event-stream"
        parts = response.iter_raw()
        for i, expected in enumerate(CHUNKS):
            assert next(parts) == f"data: {expected}\n\n".encode()
            if i < len(gates):
                gates[i].touch()
        assert next(parts, None) is None


def _progress(log: Path) -> str:
    return log.read_text() if log.exists() else ""


def test_a_slow_reader_holds_the_predict_slot_and_the_generator(tmp_path: Path) -> None:
    """predict_concurrency 1: while one client reads nothing of a 32 MiB stream, its generator waits
    (a bounded way ahead of the client) and a second request does not start predict; once the first
    client reads its stream to the end, the second is answered."""
    log = tmp_path / "log"
    size, count = 64 * 1024, 512
    body = json.dumps({"chunks": count, "size": size, "log": str(log)}).encode()
    with serving(bundle_path("stream_slot")) as server, socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        slow.connect((server.host, server.port))
        slow.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 10
        while _progress(log) in ("", "0") and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # reads nothing meanwhile
        ahead = _progress(log)
        assert ahead and not ahead.startswith("done"), f"the generator ran to its end: {ahead!r}"
        assert int(ahead) < count // 2, f"the generator ran {ahead} chunks ahead of a client that reads nothing"

        second: dict[str, object] = {}

        def other() -> None:
            started = time.monotonic()
            reply = httpx.post(server.url + PREDICT, json={"chunks": 2, "size": 3}, timeout=30)
            second.update(at=time.monotonic(), took=time.monotonic() - started, body=reply.content)

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(1.0)
        assert not second, "a second request ran predict while the first stream held the only slot"
        assert not _progress(log).startswith("done")

        drained_at = drain_chunked(slow, size * count)
        thread.join(30)
        assert second["body"] == b"xxxxxx"
        assert second["at"] >= drained_at - 0.5  # answered once the first stream was (nearly) read
        assert _progress(log) == f"done {count}"


def test_in_process_a_slow_reader_holds_the_predict_slot(tmp_path: Path) -> None:
    """The same through kingpost.load: a caller that stops reading its chunks keeps the generator
    waiting (within runtime.limits.stream_buffer_bytes, 1 MiB) and the only predict slot taken."""
    log = tmp_path / "log"
    size = 64 * 1024
    bundle = kingpost.load(bundle_path("stream_slot"))
    try:
        chunks = iter(bundle.predict({"chunks": 200, "size": size, "log": str(log)}))
        assert next(chunks) == b"x" * size
        time.sleep(0.5)  # reads nothing meanwhile
        ahead = _progress(log)
        # 1 MiB of room is 16 of these chunks (the 16th goes in below the bound), one taken, one in hand
        assert ahead and not ahead.startswith("done") and int(ahead) <= 20, ahead

        second: dict[str, object] = {}
        thread = threading.Thread(target=lambda: second.update(
            body=b"".join(bundle.predict({"chunks": 2, "size": 3})), at=time.monotonic()))
        thread.start()
        time.sleep(0.5)
        assert not second, "a second predict ran while the first stream held the only slot"
        rest = list(chunks)
        drained_at = time.monotonic()
        thread.join(10)
        assert len(rest) == 199
        assert second["body"] == b"xxxxxx"
        assert second["at"] >= drained_at - 0.5
        assert _progress(log) == "done 200"
    finally:
        bundle.close()


@pytest.mark.parametrize("bundle_name", ["stream_tokens", "stream_tokens_async"], ids=["sync", "async"])
@pytest.mark.parametrize("kind, count, every, room", [
    ("text", 40_000, 100, 1024 * 1024 // (5 + 64) + 1),  # a 5-character token counts 5 + 64 bytes
    ("dict", 5_000, 16, 1024 * 1024 // 1024),  # a chunk that is not bytes or text counts 1 KiB
], ids=["text", "dict"])
def test_the_room_is_counted_in_bytes_for_small_and_non_bytes_chunks(
        tmp_path: Path, bundle_name: str, kind: str, count: int, every: int, room: int) -> None:
    """runtime.limits.stream_buffer_bytes (1 MiB) bounds a stream of tiny chunks by their bytes plus
    a per-chunk overhead, and one of dicts at 1 KiB a chunk: a reader that stops after the first chunk
    lets the generator run thousands of chunks ahead (a chunk count of 16 would have stopped it at 17),
    but no further than the room; then the reader gets every chunk, in order."""
    log = tmp_path / "log"
    bundle = kingpost.load(bundle_path(bundle_name))
    try:
        chunks = iter(bundle.predict({"chunks": count, "kind": kind, "log": str(log), "every": every}))
        first = next(chunks)
        assert first == ("tok. " if kind == "text" else {"token": 0})
        deadline = time.monotonic() + 20
        while not _progress(log).startswith("done") and int(_progress(log) or 0) < room * 9 // 10:
            assert time.monotonic() < deadline, f"the generator stopped at {_progress(log)!r}, far inside its room"
            time.sleep(0.05)
        time.sleep(0.3)  # reads nothing meanwhile
        ahead = _progress(log)
        assert not ahead.startswith("done"), "the generator ran to its end ahead of a reader that reads nothing"
        assert room * 9 // 10 <= int(ahead) <= room + 2, ahead  # the room, the chunk taken, one in hand
        rest = list(chunks)
        assert len(rest) == count - 1
        if kind == "dict":
            assert [c["token"] for c in rest] == list(range(1, count))
        assert _progress(log) == f"done {count}"
    finally:
        bundle.close()
