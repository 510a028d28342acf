"""A sync generator predict whose chunks come fast is driven on the event loop, not a predict thread.

After ``INLINE_AFTER`` streams whose ``next()`` calls each took under ``INLINE_MAX_S`` on a predict
thread, the loop calls the generator itself, one ``next()`` per chunk the reader takes (no thread
hand-offs, the raw ASGI app's cost). What must not change: the slot is held until the stream ends
(other requests wait), a slow reader slows the generator, a slow ``next()`` hands the rest of the
stream back to a predict thread, an error or an abandoned stream frees the slot, and other
connections are served while a long stream is driven. The bundle (tests/bundles/stream_where) puts
in every chunk the name of the thread that made it.

"Fast" is raised to 10 ms here (in process by patching, for the server by $KINGPOST_INLINE_MAX_S),
so that a busy machine preempting a 10 µs ``next()`` cannot make it look slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import kingpost
from conftest import bundle_path
from kingpost.predictor import thread_predictor
from kingpost.predictor.streams import EMPTY, END
from kingpost.predictor.thread_predictor import INLINE_AFTER
from kingpost.runtime import Runtime
from serving import Server, drain_chunked, serving

pytestmark = pytest.mark.timeout(90)

FAST_S = 0.01
SLOW_S = 3 * FAST_S  # slow, but one such call in SLOW_SHARE is let pass
HAND_OFF_S = 0.2  # a call longer than this hands the rest of its stream to a thread at once


@pytest.fixture(autouse=True)
def _fast_is_under_10_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thread_predictor, "INLINE_MAX_S", FAST_S)
    monkeypatch.setattr(thread_predictor, "HAND_OFF_S", HAND_OFF_S)

PREDICT = "/v1/models/model:predict"
PREDICT_THREAD = "kingpost-predict"


def _threads(chunks: list[str], count: int) -> list[str]:
    """The thread that made each chunk, checking the chunks are all there and in order."""
    assert [int(c.split()[0]) for c in chunks] == list(range(count)), chunks
    return [c.split()[1] for c in chunks]


def _on_loop(names: list[str]) -> bool:
    return all(not n.startswith(PREDICT_THREAD) for n in names)


def _progress(log: Path) -> str:
    return log.read_text().strip() if log.exists() else ""


@pytest.fixture
def bundle() -> Iterator[kingpost.Bundle]:
    b = kingpost.load(bundle_path("stream_where"))
    try:
        yield b
    finally:
        b.close()


@contextlib.asynccontextmanager
async def warm_runtime() -> AsyncIterator[Runtime]:
    """The bundle's Runtime on this loop, after enough fast streams for the next to be driven here."""
    runtime = Runtime.from_dir(bundle_path("stream_where"))
    await runtime.start()
    try:
        for _ in range(INLINE_AFTER + 2):
            assert len([c async for c in await runtime.predict({"chunks": 3})]) == 3
        yield runtime
    finally:
        await runtime.stop()


def _warm(bundle: kingpost.Bundle) -> None:
    """Enough fast streams, one at a time, for the next one to be driven on the loop."""
    for _ in range(INLINE_AFTER + 2):
        assert len(list(bundle.predict({"chunks": 3}))) == 3


def test_fast_streams_move_from_a_predict_thread_to_the_loop(bundle: kingpost.Bundle) -> None:
    first = _threads(list(bundle.predict({"chunks": 5})), 5)
    assert all(n.startswith(PREDICT_THREAD) for n in first), first
    _warm(bundle)
    names = _threads(list(bundle.predict({"chunks": 50})), 50)
    assert _on_loop(names) and len(set(names)) == 1, names


@pytest.mark.parametrize("slow_at, slow_s, loop_made", [
    ([4], SLOW_S, 10),  # one slow call in ten: a preempted call looks like this; it stays
    ([4, 5], SLOW_S, 6),  # two in six: the generator is slow; chunks 6.. come from the thread
    ([4], 1.5 * HAND_OFF_S, 5),  # one call that held the loop too long: the rest from the thread
], ids=["one-slow-call-stays", "slow-calls-hand-off", "one-long-call-hands-off"])
def test_a_slow_generator_on_the_loop_hands_the_rest_to_a_predict_thread(
        bundle: kingpost.Bundle, slow_at: list[int], slow_s: float, loop_made: int) -> None:
    _warm(bundle)
    names = _threads(list(bundle.predict({"chunks": 10, "slow_at": slow_at, "slow_s": slow_s})), 10)
    assert _on_loop(names[:loop_made]), names
    assert all(n.startswith(PREDICT_THREAD) for n in names[loop_made:]), names
    again = _threads(list(bundle.predict({"chunks": 5})), 5)
    if loop_made < 10:  # handed off: the loop waits longer before trying again
        assert all(n.startswith(PREDICT_THREAD) for n in again), again
    else:
        assert _on_loop(again), again


def test_a_failure_on_the_loop_is_the_generators_error_and_frees_the_slot(bundle: kingpost.Bundle) -> None:
    _warm(bundle)
    got: list[str] = []
    with pytest.raises(kingpost.ModelError, match="chunk 3 failed"):
        for chunk in bundle.predict({"chunks": 10, "fail_at": 3}):
            got.append(chunk)
    assert _on_loop(_threads(got, 3))
    assert len(list(bundle.predict({"chunks": 4}))) == 4  # the slot is free again


def test_abandoning_a_loop_stream_closes_the_generator_and_frees_the_slot(
        bundle: kingpost.Bundle, tmp_path: Path) -> None:
    _warm(bundle)
    log = tmp_path / "log"
    chunks = iter(bundle.predict({"chunks": 1000, "log": str(log)}))
    made = [next(chunks), next(chunks)]
    assert _on_loop(_threads(made, 2))
    assert _progress(log).startswith("1 ")  # made on demand: nothing ahead of the reader
    chunks.close()  # type: ignore[attr-defined]
    assert _progress(log) == "done 1"  # closed at once, on the loop, at its second yield
    assert len(list(bundle.predict({"chunks": 4}))) == 4


@pytest.fixture(scope="module")
def warm_server() -> Iterator[Server]:
    with serving(bundle_path("stream_where"), env={"KINGPOST_INLINE_MAX_S": str(FAST_S)}) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(INLINE_AFTER + 2):
                assert client.post(PREDICT, json={"chunks": 3}).text.count("\n") == 3
        yield server


def test_over_http_a_loop_stream_holds_the_slot_and_waits_for_a_slow_reader(
        warm_server: Server, tmp_path: Path) -> None:
    """A client that reads nothing of a 32 MiB stream made on the loop: the generator stops within
    the socket's buffers, and a second request does not enter predict until the first is read."""
    server = warm_server
    log = tmp_path / "log"
    pad, count = 64 * 1024, 512
    body = json.dumps({"chunks": count, "pad": pad, "log": str(log)}).encode()
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        slow.connect((server.host, server.port))
        slow.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 10
        while _progress(log) in ("",) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # reads nothing meanwhile
        ahead = _progress(log)
        assert ahead and not ahead.startswith("done"), f"the generator ran to its end: {ahead!r}"
        made, thread = ahead.split()
        assert not thread.startswith(PREDICT_THREAD), f"made on {thread}, not on the loop"
        assert int(made) < count // 4, f"the generator ran {made} chunks ahead of a client that reads nothing"

        second: dict[str, object] = {}

        def other() -> None:
            reply = httpx.post(server.url + PREDICT, json={"chunks": 2}, timeout=30)
            second.update(at=time.monotonic(), body=reply.text)

        waiter = threading.Thread(target=other)
        waiter.start()
        time.sleep(1.0)
        assert not second, "a second request ran predict while the first stream held the only slot"

        drained_at = drain_chunked(slow, pad * count)
        waiter.join(30)
        assert second["at"] >= drained_at - 0.5  # type: ignore[operator]
        assert _threads(str(second["body"]).splitlines(), 2)
        assert _progress(log) == f"done {count}"


def test_streams_that_arrive_together_take_the_loop_one_after_another() -> None:
    """Eight readers at once, each yielding to the others between chunks: every stream is made on
    the loop, and no two are made at once (a stream's chunks are made only as its reader takes
    them, so any overlap would interleave their chunks in the order they were received)."""
    async def main() -> None:
        received: list[tuple[int, str]] = []
        async with warm_runtime() as runtime:
            async def read(k: int) -> None:
                async for chunk in await runtime.predict({"chunks": 20}):
                    received.append((k, chunk))
                    await asyncio.sleep(0)

            await asyncio.gather(*(read(k) for k in range(8)))
            assert runtime.waiting == 0
        order = [k for k, _ in received]
        runs = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
        assert sorted(runs) == list(range(8)), runs  # each stream's 20 chunks in one run
        for k in range(8):
            names = _threads([c for j, c in received if j == k], 20)
            assert names == [threading.current_thread().name] * 20, names
    asyncio.run(main())


def test_a_caller_cancelled_as_the_slot_reaches_it_frees_the_slot() -> None:
    """The slot passes from a stream on the loop to a waiting request by resolving its future with
    a new stream; if that request is cancelled before it resumes (its client left), the stream it
    never saw must close, or the slot is held for good (found by the bench: every later request
    waited)."""
    async def main() -> None:
        async with warm_runtime() as runtime:
            first = await runtime.predict({"chunks": 10})
            assert first.take() != EMPTY  # on the loop, holding the slot
            waiter = asyncio.get_running_loop().create_task(runtime.predict({"chunks": 10}))
            for _ in range(3):
                await asyncio.sleep(0)
            assert runtime.waiting == 1
            await first.aclose()  # the slot passes to the waiter: its future now holds a stream
            waiter.cancel()  # ... and its client leaves before it resumes
            with pytest.raises(asyncio.CancelledError):
                await waiter
            third = await asyncio.wait_for(runtime.predict({"chunks": 4}), 5)
            assert len([c async for c in third]) == 4
    asyncio.run(main())


def test_the_loop_gets_a_turn_while_it_drives_a_long_stream() -> None:
    """A reader that never waits (every chunk is ready at once, as for a client that keeps up)
    would hold the loop for the whole stream; the loop gives itself a turn every LOOP_TURN_S."""
    async def main() -> None:
        async with warm_runtime() as runtime:
            ticks: list[float] = []

            async def tick() -> None:
                while True:
                    ticks.append(time.monotonic())
                    await asyncio.sleep(0)

            ticker = asyncio.get_running_loop().create_task(tick())
            await asyncio.sleep(0)
            stream = await runtime.predict({"chunks": 400_000})
            started = time.monotonic()
            names, turns = set(), 0
            while True:  # the app's own loop: take(), and wait() only when no chunk is ready
                chunk = stream.take()
                if chunk is END:
                    break
                if chunk is EMPTY:
                    turns += 1
                    await stream.wait()
                    continue
                names.add(chunk.split()[1])
            took = time.monotonic() - started
            ticker.cancel()
        assert names == {threading.current_thread().name}, names  # all made on this loop
        gaps = [b - a for a, b in itertools.pairwise(ticks) if a >= started]
        assert took > 0.05 and turns >= 10, (took, turns)
        assert max(gaps) < took / 5, (max(gaps), took)
    asyncio.run(main())
