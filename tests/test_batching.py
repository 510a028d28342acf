"""Dynamic batching and backpressure, in-process through the runtime (the server shares it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kingpost.errors import DeadlineExceeded, ModelError, ModelLoadError
from kingpost.runtime import Runtime

BUNDLES = Path(__file__).parent / "bundles"


async def _started(name: str) -> Runtime:
    runtime = Runtime.from_dir(BUNDLES / name)
    await runtime.start()
    return runtime


async def _many(runtime: Runtime, inputs: list[Any]) -> list[Any]:
    return await asyncio.gather(*(runtime.predict(x) for x in inputs), return_exceptions=True)


def test_64_concurrent_requests_reach_predict_in_batches_of_at_most_8_and_each_gets_its_own_answer() -> None:
    async def scenario() -> tuple[list[Any], list[int]]:
        runtime = await _started("batch_tagged")
        try:
            results = await _many(runtime, [{"tag": f"r{i}", "value": i} for i in range(64)])
            return results, list(runtime._predictor._hook.fn.__self__.batch_sizes)  # type: ignore[union-attr]
        finally:
            await runtime.stop()

    results, sizes = asyncio.run(scenario())
    assert [r["tag"] for r in results] == [f"r{i}" for i in range(64)]
    assert [r["double"] for r in results] == [2 * i for i in range(64)]
    assert sum(sizes) == 64
    assert max(sizes) <= 8
    assert max(sizes) > 1, f"no batching happened: {sizes}"
    assert all(r["max_active"] == 1 for r in results)  # one batcher, one predict at a time


def test_a_lone_request_runs_in_a_batch_of_one() -> None:
    async def scenario() -> Any:
        runtime = await _started("batch_tagged")
        try:
            return await runtime.predict({"tag": "alone", "value": 3})
        finally:
            await runtime.stop()

    assert asyncio.run(scenario()) == {"tag": "alone", "double": 6, "batch": 1, "max_active": 1}


def test_a_wrong_output_length_fails_exactly_that_batch_and_the_runtime_keeps_serving() -> None:
    async def scenario() -> tuple[list[Any], Any]:
        runtime = await _started("batch_wrong_length")
        try:
            bad = await _many(runtime, [{"value": 1}, {"value": 2, "bad": True}, {"value": 3}, {"value": 4}])
            good = await runtime.predict({"value": 5})
            return bad, good
        finally:
            await runtime.stop()

    bad, good = asyncio.run(scenario())
    assert all(isinstance(r, ModelError) for r in bad), bad
    assert str(bad[0]) == ("batched predict returned 3 outputs for a batch of 4 inputs; "
                           "it must return one output per input, in order")
    assert bad[0].stage == "predict"
    assert good == 5


def test_streaming_with_batching_is_rejected_at_load() -> None:
    with pytest.raises(ModelLoadError, match="batching cannot be combined with a streaming predict"):
        asyncio.run(_started("batch_streaming"))


def test_a_request_whose_deadline_passed_before_its_batch_started_is_dropped() -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        runtime = await _started("batch_deadline")
        try:
            slow = asyncio.ensure_future(runtime.predict({"tag": "slow", "slow": True}))
            while runtime.stats.predicting == 0:  # the slow batch is inside predict
                await asyncio.sleep(0.005)
            late = await asyncio.gather(runtime.predict({"tag": "late"}), return_exceptions=True)
            first = await asyncio.gather(slow, return_exceptions=True)
            while runtime.stats.predicting:  # the slow predict runs on after its caller gave up
                await asyncio.sleep(0.01)
            after = await runtime.predict({"tag": "after"})
            return first[0], late[0], after
        finally:
            await runtime.stop()

    first, late, after = asyncio.run(scenario())
    assert isinstance(first, DeadlineExceeded)  # 1 s of predict against a 0.3 s deadline
    assert isinstance(late, DeadlineExceeded)
    assert after["seen"] == ["slow", "after"]  # "late" never reached predict


def test_a_request_cancelled_before_its_batch_started_is_dropped() -> None:
    async def scenario() -> Any:
        runtime = await _started("batch_tagged")
        gate = runtime._predictor  # type: ignore[union-attr]
        model = gate._hook.fn.__self__  # type: ignore[union-attr]
        try:
            # Hold the only predict slot with a batch that waits on an event.
            import threading

            release = threading.Event()
            original = model.predict

            def held(items: list[Any]) -> list[Any]:
                if items[0]["tag"] == "hold":
                    release.wait(10)
                return original(items)

            gate._hook.fn = held
            holder = asyncio.ensure_future(runtime.predict({"tag": "hold", "value": 0}))
            while runtime.stats.predicting == 0:
                await asyncio.sleep(0.005)
            gone = asyncio.ensure_future(runtime.predict({"tag": "gone", "value": 1}))
            while runtime.waiting == 0:
                await asyncio.sleep(0.005)
            gone.cancel()
            await asyncio.sleep(0)
            release.set()
            await holder
            after = await runtime.predict({"tag": "after", "value": 2})
            return model.batch_sizes, after
        finally:
            await runtime.stop()

    sizes, after = asyncio.run(scenario())
    assert sizes == [1, 1]  # "hold", then "after": "gone" never reached predict
    assert after["tag"] == "after"


def test_an_async_predict_is_batched_the_same_way() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        runtime = await _started("batch_async")
        try:
            good = await _many(runtime, ["a", "b", "c", "d", "e"])
            bad = await _many(runtime, ["x", "bad"])
            return good, bad
        finally:
            await runtime.stop()

    good, bad = asyncio.run(scenario())
    assert [g["item"] for g in good] == ["a", "b", "c", "d", "e"]
    assert max(g["batch"] for g in good) == 4  # at most max_batch_size, and batching happened
    assert all(isinstance(b, ModelError) and "returned 1 outputs for a batch of 2" in str(b) for b in bad)
