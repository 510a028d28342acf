"""A sync predict faster than a thread hand-off is called on the event loop, within the predict lock.

The thread a call ran on is read from the call itself (``threading.get_ident()`` inside predict),
and the lock is checked with a counter of predict calls (and streams) running at once. "Fast" is
raised to 10 ms here, so that a busy machine preempting a 2 us predict cannot make it look slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import bundle_path
from kingpost.errors import ModelError
from kingpost.predictor import thread_predictor
from kingpost.predictor.jobs import ClientGone
from kingpost.predictor.thread_predictor import INLINE_AFTER
from kingpost.runtime import Runtime

pytestmark = pytest.mark.timeout(60)

FAST_S = 0.01
SLOW = {"work": lambda: time.sleep(3 * FAST_S)}


@pytest.fixture(autouse=True)
def _fast_is_under_10_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thread_predictor, "INLINE_MAX_S", FAST_S)


@contextlib.asynccontextmanager
async def probe(path: Path | None = None) -> AsyncIterator[Runtime]:
    path = path or bundle_path("inline_probe")
    runtime = Runtime.from_dir(path)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def threads_of(runtime: Runtime, calls: int) -> list[int]:
    """Make ``calls`` fast predicts one after another; the thread each ran on."""
    return [(await runtime.predict({}))["thread"] for _ in range(calls)]


def test_a_fast_predict_moves_from_its_thread_onto_the_loop() -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        async with probe() as runtime:
            threads = await threads_of(runtime, INLINE_AFTER + 8)
        assert loop_thread not in threads[:INLINE_AFTER]  # measured on the predict thread first
        assert threads[INLINE_AFTER:] == [loop_thread] * 8
    asyncio.run(main())


def test_a_slow_call_on_the_loop_sends_predict_back_to_its_thread_for_longer() -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        async with probe() as runtime:
            await threads_of(runtime, INLINE_AFTER)
            assert (await runtime.predict(SLOW))["thread"] == loop_thread  # it could not be known
            threads = await threads_of(runtime, 4 * INLINE_AFTER + 1)
        assert loop_thread not in threads[:4 * INLINE_AFTER]  # four times the streak is needed now
        assert threads[-1] == loop_thread
    asyncio.run(main())


@pytest.mark.parametrize("slots", [1, 2])
def test_the_lock_holds_while_calls_move_between_the_loop_and_the_threads(
        copy_bundle: Callable[..., Path], slots: int) -> None:
    path = copy_bundle("inline_probe", runtime={"predict_concurrency": slots})

    async def main() -> None:
        loop_thread = threading.get_ident()
        async with probe(path) as runtime:
            await threads_of(runtime, INLINE_AFTER)
            results: list[dict[str, Any]] = []
            for _ in range(6):  # waves of concurrent requests; every 7th is slow
                results += await asyncio.gather(*(runtime.predict(SLOW if i % 7 == 6 else {}) for i in range(40)))
        on_loop = sum(r["thread"] == loop_thread for r in results)
        assert 0 < on_loop < len(results)  # both ways were taken
        assert max(r["seen"] for r in results) <= slots
    asyncio.run(main())


def test_a_generator_returned_on_the_loop_streams_from_a_thread_and_holds_the_slot() -> None:
    async def main() -> None:
        release = threading.Event()

        def gated() -> Iterator[str]:
            yield "a"
            assert release.wait(20)
            yield "b"

        async with probe() as runtime:
            await threads_of(runtime, INLINE_AFTER)
            stream = await runtime.predict({"chunks": gated()})
            chunks = stream.__aiter__()
            assert await chunks.__anext__() == "a"  # the generator now waits inside the slot
            second = asyncio.ensure_future(runtime.predict({}))
            for _ in range(20):  # every chance for a wrongly free slot to run request 2 here
                await asyncio.sleep(0)
            assert not second.done()
            assert runtime.waiting == 1
            release.set()
            assert [chunk async for chunk in chunks] == ["b"]
            assert (await second)["seen"] == 1
            assert (await runtime.predict({}))["thread"] == threading.get_ident()  # the slot came back
    asyncio.run(main())


def test_an_error_on_the_loop_is_answered_as_on_a_thread() -> None:
    def fail() -> None:
        raise ValueError("bad pixel")

    async def main() -> None:
        async with probe() as runtime:
            with pytest.raises(ModelError) as on_thread:
                await runtime.predict({"work": fail})
            await threads_of(runtime, INLINE_AFTER)
            with pytest.raises(ModelError) as on_loop:
                await runtime.predict({"work": fail})
            assert (await runtime.predict({}))["thread"] == threading.get_ident()  # and it stays there
        assert str(on_loop.value) == str(on_thread.value) == "predict raised ValueError: bad pixel"
        assert isinstance(on_loop.value.__cause__, ValueError)
    asyncio.run(main())


def test_a_caller_gone_before_its_turn_is_not_predicted_on_the_loop() -> None:
    calls: list[int] = []

    async def main() -> None:
        async with probe() as runtime:
            await threads_of(runtime, INLINE_AFTER)
            with pytest.raises(ClientGone):
                await runtime.predict({"work": lambda: calls.append(1)}, gone=lambda: True)
    asyncio.run(main())
    assert calls == []
