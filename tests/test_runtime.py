"""The runtime: states, hook errors, and the concurrency contract (DESIGN.md section 3).

Concurrency is proven with barriers, events and counters, never with wall-clock thresholds: a
barrier of N can only be passed by N callers at once, and every barrier has a timeout so that a
broken runtime fails rather than hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import bundle_path
from kingpost.errors import InputError, ModelError, ModelLoadError, NotReadyError
from kingpost.runtime import Runtime
from kingpost.types import State

pytestmark = pytest.mark.timeout(60)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def running(where: str | Path, **kwargs: Any) -> AsyncIterator[Runtime]:
    path = bundle_path(where) if isinstance(where, str) else where
    runtime = Runtime.from_dir(path, **kwargs)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until ``condition()`` holds; the deadline is only a safety net."""
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting until {what}"
        await asyncio.sleep(0.001)


async def drain(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


# -- lifecycle ---------------------------------------------------------------------------------------

def test_states_new_loading_ready() -> None:
    async def main() -> None:
        path = bundle_path("echo")
        runtime = Runtime.from_dir(path)
        assert runtime.state is State.NEW
        with pytest.raises(NotReadyError, match=r"^the model is new; retry shortly\.$"):
            await runtime.predict(1)
        starting = asyncio.ensure_future(runtime.start())
        await asyncio.sleep(0)  # start() has begun and now waits for the import on a thread
        assert runtime.state is State.LOADING
        with pytest.raises(NotReadyError, match=r"^the model is loading; retry shortly\.$"):
            await runtime.predict(1)
        assert await runtime.is_healthy() is False
        await starting
        assert runtime.state is State.READY
        assert runtime.failure is None
        assert await runtime.is_healthy() is True
        assert await runtime.predict({"x": 1}) == {"x": 1}
        await runtime.stop()
    run(main())


def test_failed_state_keeps_the_reason() -> None:
    async def main() -> None:
        path = bundle_path("load_raises")
        runtime = Runtime.from_dir(path)
        with pytest.raises(ModelLoadError):
            await runtime.start()
        reason = "load_raises/model/model.py: Model.load() raised FileNotFoundError: weights.bin is not in data/."
        assert runtime.state is State.FAILED
        assert runtime.failure == reason
        assert await runtime.is_healthy() is False
        with pytest.raises(NotReadyError) as info:
            await runtime.predict(1)
        assert str(info.value) == f"the model failed to load: {reason}"
        await runtime.stop()
    run(main())


@pytest.mark.parametrize("name, healthy", [("echo", True), ("async_hooks", True), ("is_healthy_false", False)])
def test_is_healthy_is_consulted(name: str, healthy: bool) -> None:
    async def main() -> None:
        async with running(name) as runtime:
            assert runtime.state is State.READY
            assert await runtime.is_healthy() is healthy
    run(main())


def test_async_hooks_run_on_the_event_loop() -> None:
    async def main() -> None:
        async with running("async_hooks") as runtime:
            result = await runtime.predict("hi")
        loop_thread = threading.get_ident()
        assert result["input"] == "hi"
        assert result["threads"] == dict.fromkeys(("load", "preprocess", "predict", "postprocess"), loop_thread)
    run(main())


# -- hook errors ------------------------------------------------------------------------------------

HOOK_ERRORS = {
    "preprocess": "preprocess raised ValueError: cannot parse the input",
    "predict": "predict raised RuntimeError: CUDA out of memory",
    "postprocess": "postprocess raised ZeroDivisionError: division by zero",
}


@pytest.mark.parametrize("name", ["hook_raises", "async_hook_raises"])
def test_user_exception_in_each_hook_is_a_model_error_and_serving_goes_on(name: str) -> None:
    async def main() -> None:
        async with running(name) as runtime:
            for stage, message in HOOK_ERRORS.items():
                with pytest.raises(ModelError) as info:
                    await runtime.predict({"raise": stage})
                assert info.value.stage == stage
                assert str(info.value) == message
                assert info.value.__cause__ is not None
                assert await runtime.predict({"x": 1}) == {"x": 1}  # still serving
            assert runtime.state is State.READY
            assert await runtime.is_healthy() is True
    run(main())


@pytest.mark.parametrize("name", ["hook_raises", "async_hook_raises"])
def test_input_errors_pass_through(name: str) -> None:
    async def main() -> None:
        async with running(name) as runtime:
            with pytest.raises(InputError) as info:
                await runtime.predict({"raise": "input"})
            assert type(info.value) is InputError
            assert str(info.value) == "expected a field 'x'."
            # A Truss model raising fastapi.HTTPException(400, detail) means the same thing.
            with pytest.raises(InputError, match=r"^field 'x' must be a number$"):
                await runtime.predict({"raise": "http"})
            assert await runtime.predict({"x": 2}) == {"x": 2}
    run(main())


# -- concurrency: pre/post run concurrently, with no thread cap ------------------------------------

@pytest.mark.parametrize("name", ["sync_hooks_barrier", "async_hooks_barrier"])
def test_200_requests_are_in_preprocess_and_postprocess_at_once(name: str) -> None:
    # Each preprocess (and postprocess) waits at a barrier of 200: all complete only if all 200
    # ran at the same time, which a capped thread pool (or hooks run on the loop) cannot do.
    async def main() -> None:
        async with running(name) as runtime:
            results = await asyncio.gather(*(runtime.predict(i) for i in range(200)))
        assert results == list(range(200))
    run(main())


# -- concurrency: the predict lock -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["predict_counter", "async_predict_counter"])
@pytest.mark.parametrize("slots", [1, 2])
def test_predict_never_exceeds_predict_concurrency(copy_bundle: Callable[..., Path], name: str, slots: int) -> None:
    path = copy_bundle(name, runtime={"predict_concurrency": slots})

    async def main() -> None:
        async with running(path) as runtime:
            seen = await asyncio.gather(*(runtime.predict(i) for i in range(24)))
        assert 1 <= max(seen) <= slots
    run(main())


@pytest.mark.parametrize("name", ["predict_concurrency_2", "async_predict_concurrency_2"])
def test_predict_concurrency_2_reaches_2(name: str) -> None:
    # predict waits at a barrier of 2: every call gets through only because two ran at once.
    async def main() -> None:
        async with running(name) as runtime:
            seen = await asyncio.gather(*(runtime.predict(i) for i in range(10)))
        assert max(seen) == 2
    run(main())


# -- concurrency: a stream holds its slot until its generator ends ---------------------------------

def test_sync_stream_holds_the_slot_until_the_generator_is_exhausted() -> None:
    async def main() -> None:
        log: list[tuple[str, int]] = []
        release = threading.Event()

        def first_chunks() -> Iterator[str]:
            yield "a"
            assert release.wait(20)
            yield "b"

        async with running("stream_probe") as runtime:
            stream = await runtime.predict({"id": 1, "log": log, "chunks": first_chunks()})
            chunks = stream.__aiter__()
            assert await chunks.__anext__() == "a"  # generator 1 is now blocked inside predict
            second = asyncio.ensure_future(runtime.predict({"id": 2, "log": log, "chunks": iter(["c"])}))
            await wait_until(lambda: runtime.waiting == 1 or ("start", 2) in log, "request 2 is queued")
            assert log == [("start", 1)]
            assert runtime.waiting == 1  # request 2 waits for the only slot
            release.set()
            assert await drain(chunks) == ["b"]
            assert await drain(await second) == ["c"]
        assert log == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    run(main())


def test_async_stream_holds_the_slot_until_the_generator_is_exhausted() -> None:
    async def main() -> None:
        log: list[tuple[str, int]] = []
        release = asyncio.Event()

        async def first_chunks() -> AsyncIterator[str]:
            yield "a"
            await asyncio.wait_for(release.wait(), 20)
            yield "b"

        async def one(chunk: str) -> AsyncIterator[str]:
            yield chunk

        async with running("async_stream_probe") as runtime:
            stream = await runtime.predict({"id": 1, "log": log, "chunks": first_chunks()})
            chunks = stream.__aiter__()
            assert await chunks.__anext__() == "a"
            second = asyncio.ensure_future(runtime.predict({"id": 2, "log": log, "chunks": one("c")}))
            await wait_until(lambda: runtime.waiting == 1 or ("start", 2) in log, "request 2 is queued")
            for _ in range(10):  # give a wrongly free slot every chance to take request 2
                await asyncio.sleep(0)
            assert log == [("start", 1)]
            assert runtime.waiting == 1
            release.set()
            assert await drain(chunks) == ["b"]
            assert await drain(await second) == ["c"]
        assert log == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    run(main())


def test_abandoned_sync_stream_releases_the_slot() -> None:
    async def main() -> None:
        log: list[tuple[str, int]] = []

        def endless() -> Iterator[int]:
            for i in range(100_000):  # bounded only as a safety net
                yield i
                time.sleep(0.001)

        async with running("stream_probe") as runtime:
            stream = await runtime.predict({"id": 1, "log": log, "chunks": endless()})
            assert await stream.__aiter__().__anext__() == 0
            await stream.aclose()  # the client went away
            second = await runtime.predict({"id": 2, "log": log, "chunks": iter(["c"])})
            assert await drain(second) == ["c"]
        assert log == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    run(main())


def test_abandoned_async_stream_releases_the_slot() -> None:
    async def main() -> None:
        log: list[tuple[str, int]] = []

        async def endless() -> AsyncIterator[int]:
            for i in range(100_000):
                yield i
                await asyncio.sleep(0.001)

        async def one(chunk: str) -> AsyncIterator[str]:
            yield chunk

        async with running("async_stream_probe") as runtime:
            stream = await runtime.predict({"id": 1, "log": log, "chunks": endless()})
            assert await stream.__aiter__().__anext__() == 0
            await stream.aclose()
            second = await runtime.predict({"id": 2, "log": log, "chunks": one("c")})
            assert await drain(second) == ["c"]
        assert log == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    run(main())


@pytest.mark.parametrize("name", ["stream_probe", "async_stream_probe"])
def test_stream_that_fails_midway_raises_to_its_reader_and_frees_the_slot(name: str) -> None:
    def failing() -> Iterator[str]:
        yield "a"
        raise ValueError("tokenizer broke")

    async def afailing() -> AsyncIterator[str]:
        yield "a"
        raise ValueError("tokenizer broke")

    async def one(chunk: str) -> AsyncIterator[str]:
        yield chunk

    async def main() -> None:
        log: list[tuple[str, int]] = []
        is_async = name.startswith("async")
        async with running(name) as runtime:
            stream = await runtime.predict({"id": 1, "log": log, "chunks": afailing() if is_async else failing()})
            received = []
            with pytest.raises(ModelError) as info:
                async for chunk in stream:
                    received.append(chunk)
            assert received == ["a"]
            assert (info.value.stage, str(info.value)) == ("predict", "predict raised ValueError: tokenizer broke")
            second = await runtime.predict({"id": 2, "log": log, "chunks": one("c") if is_async else iter(["c"])})
            assert await drain(second) == ["c"]
        assert log == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    run(main())


@pytest.mark.parametrize("name", ["sync_streaming", "async_streaming"])
def test_streaming_bundles(name: str) -> None:
    async def main() -> None:
        async with running(name) as runtime:
            assert runtime.streams is True
            assert await drain(await runtime.predict({"n": 3})) == ["chunk 0\n", "chunk 1\n", "chunk 2\n"]
            assert await drain(await runtime.predict({"n": 0})) == []
    run(main())
