"""The in-process handle: ``kingpost.load(DIR)`` -> Bundle, from scripts, threads, coroutines and notebooks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import kingpost
from conftest import bundle_path
from kingpost.errors import BundleError, InputError, ModelError
from kingpost.types import State

pytestmark = pytest.mark.timeout(60)

Load = Callable[..., Any]


def test_load_runs_no_user_code(load: Load) -> None:
    bundle = load("load_raises")  # its load() would raise; nothing has run yet
    assert bundle.state is State.NEW
    assert bundle.name == "load-raises"
    assert bundle.config.model_name == "load-raises"
    assert repr(bundle) == f"Bundle({str(bundle_path('load_raises'))!r}, name='load-raises')"


def test_predict_loads_once_then_predicts(load: Load) -> None:
    bundle = load("echo")
    assert bundle.predict({"x": 1}) == {"x": 1}
    assert bundle.state is State.READY
    assert bundle.predict([1, 2]) == [1, 2]


def test_load_model_ahead_of_the_first_predict(load: Load) -> None:
    bundle = load("echo")
    bundle.load_model()
    assert bundle.state is State.READY


def test_predict_from_inside_a_running_event_loop(load: Load) -> None:
    # A Jupyter cell runs inside an event loop; the sync predict must still work there.
    bundle = load("echo")

    async def cell() -> Any:
        asyncio.get_running_loop()
        return bundle.predict({"x": 1})

    assert asyncio.run(cell()) == {"x": 1}


def test_apredict(load: Load) -> None:
    bundle = load("async_hooks")

    async def main() -> Any:
        return await asyncio.gather(*(bundle.apredict(i) for i in range(5)))

    results = asyncio.run(main())
    assert [r["input"] for r in results] == [0, 1, 2, 3, 4]


def test_first_predicts_from_many_threads_load_once(load: Load) -> None:
    bundle = load("echo")
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(bundle.predict, range(32))) == list(range(32))
    assert bundle.state is State.READY


@pytest.mark.parametrize("name", ["sync_streaming", "async_streaming"])
def test_streaming_predict_returns_an_iterator(load: Load, name: str) -> None:
    bundle = load(name)
    chunks = bundle.predict({"n": 3})
    assert bundle.streams is True
    assert isinstance(chunks, Iterator)
    assert list(chunks) == ["chunk 0\n", "chunk 1\n", "chunk 2\n"]


@pytest.mark.parametrize("name", ["sync_streaming", "async_streaming"])
def test_streaming_apredict_returns_an_async_iterator(load: Load, name: str) -> None:
    bundle = load(name)

    async def main() -> list[str]:
        chunks = await bundle.apredict({"n": 2})
        assert isinstance(chunks, AsyncIterator)
        return [chunk async for chunk in chunks]

    assert asyncio.run(main()) == ["chunk 0\n", "chunk 1\n"]


def test_closing_a_stream_early_frees_the_model(load: Load) -> None:
    bundle = load("stream_probe")
    log: list[tuple[str, int]] = []

    def endless() -> Iterator[int]:
        for i in range(100_000):  # bounded only as a safety net
            yield i
            time.sleep(0.001)

    chunks = bundle.predict({"id": 1, "log": log, "chunks": endless()})
    assert next(chunks) == 0
    chunks.close()
    assert list(bundle.predict({"id": 2, "log": log, "chunks": iter("ab")})) == ["a", "b"]
    assert log == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]


def test_examples(load: Load) -> None:
    bundle = load("echo")
    assert bundle.examples() == {"hello": {"x": 1}, "numbers": [1, 2, 3]}
    assert bundle.predict(example="hello") == {"x": 1}
    assert bundle.predict(example="numbers") == [1, 2, 3]
    assert load("no_load").examples() == {}


def test_missing_example_is_one_sentence(load: Load) -> None:
    bundle = load("echo")
    with pytest.raises(BundleError) as info:
        bundle.predict(example="goodbye")
    assert str(info.value) == (
        f"{bundle_path('echo') / 'examples.yaml'}: no example named 'goodbye' (examples: hello, numbers).")
    with pytest.raises(BundleError, match=r"no example named 'x' \(examples: none\)\.$"):
        load("no_load").predict(example="x")


def test_errors_reach_the_caller_and_the_bundle_keeps_working(load: Load) -> None:
    bundle = load("hook_raises")
    with pytest.raises(ModelError, match=r"^predict raised RuntimeError: CUDA out of memory$"):
        bundle.predict({"raise": "predict"})
    with pytest.raises(InputError):
        bundle.predict({"raise": "input"})

    async def main() -> Any:
        with pytest.raises(ModelError):
            await bundle.apredict({"raise": "postprocess"})
        return await bundle.apredict({"ok": True})

    assert asyncio.run(main()) == {"ok": True}


def test_init_scaffolds_a_bundle_that_runs(tmp_path: Path) -> None:
    bundle = kingpost.init(tmp_path / "my-model")
    try:
        assert bundle.name == "my-model"
        assert bundle.predict({"x": 1}) == {"x": 1}
        assert bundle.predict(example="hello") == {"x": 1}
    finally:
        bundle.close()


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BundleError) as info:
        kingpost.init(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: expected an empty or new directory, found existing files; kingpost init writes nothing there.")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_predict_from_a_thread_while_another_bundle_streams(load: Load) -> None:
    # Bundles share one background loop: a stream being read must not block another bundle.
    streaming, echo = load("stream_probe"), load("echo")
    release = threading.Event()

    def blocked() -> Iterator[str]:
        yield "a"
        assert release.wait(20)
        yield "b"

    chunks = streaming.predict({"id": 1, "log": [], "chunks": blocked()})
    assert next(chunks) == "a"
    assert echo.predict("still served") == "still served"
    release.set()
    assert list(chunks) == ["b"]
