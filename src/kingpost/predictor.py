"""The predict lock: ``predict_concurrency`` slots, each a worker pulling jobs from one queue.

A sync predict runs on dedicated threads (one per slot) that take the next job the moment the
previous predict returns, so predict never waits for the event loop between jobs. A sync predict
that has proved faster than that hand-off (its last ``INLINE_AFTER`` calls each under
``INLINE_MAX_S``) is called on the event loop itself while a slot is free, since handing it to a
thread would cost more than the predict; so predict may run on any predict thread or on the loop's
thread, and must not rely on thread-local state. An async predict runs on the same number of worker
tasks on the loop. With batching, a worker gathers up to ``max_batch_size`` jobs, waiting at most
``max_wait_ms`` after the oldest arrived, and is the only caller of ``predict(list)``. A streaming
predict keeps its worker (its slot) until the generator ends, fails or is abandoned by its consumer.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import AsyncGeneratorType, GeneratorType
from typing import Any

from kingpost.config import Batching
from kingpost.errors import DeadlineExceeded, InputError, KingpostError, ModelError, QueueFullError
from kingpost.stats import RuntimeStats

_STOP = object()
_END = object()
QUEUE: Any = object()
"""What :meth:`ThreadPredictor.inline` returns when predict cannot be called on the loop now."""

INLINE_MAX_S = 0.0001
"""A sync predict is called on the event loop only while its calls take less than this: a hand-off
to a predict thread and back costs ~10-15 us of CPU and two context switches, and a call this short
delays the loop's other requests less than that hand-off would."""
INLINE_AFTER = 32
"""Consecutive calls under INLINE_MAX_S before predict is called on the loop; multiplied by 4 (up to
INLINE_AFTER_MAX) each time a call on the loop took longer, so a predict that is only sometimes slow
stops blocking the loop."""
INLINE_AFTER_MAX = 1 << 20


class Job:
    """One request's trip through predict."""

    __slots__ = ("cancelled", "deadline", "enqueued", "future", "gone", "input")

    def __init__(self, value: Any, future: asyncio.Future[Any], deadline: float | None,
                 gone: Callable[[], bool] | None = None) -> None:
        self.input = value
        self.future = future
        self.deadline = deadline
        self.gone = gone  # the front door's "has the client gone away?", asked before predict runs
        self.cancelled = False
        self.enqueued = 0.0


class _PumpJob(Job):
    """A generator returned by a predict called on the loop: a predict thread drives it into ``stream``."""

    __slots__ = ("stream",)
    stream: ChunkStream


class ClientGone(Exception):
    """The caller went away before predict started; the request was dropped."""


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ChunkStream:
    """The output of a streaming predict, read with ``async for``; ``aclose()`` abandons it."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._done = False

    def put(self, item: Any) -> None:  # called on the loop
        self._queue.put_nowait(item)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        return item

    async def aclose(self) -> None:
        self._done = True
        self._job.cancelled = True


def user_error(stage: str, exc: BaseException) -> KingpostError:
    """Translate what a user hook raised into the domain error the front doors understand."""
    if isinstance(exc, KingpostError):
        return exc
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:  # e.g. a Truss model raising HTTPException(400)
        err: KingpostError = InputError(str(getattr(exc, "detail", None) or exc))
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err = ModelError(stage, f"{stage} raised {type(exc).__name__}" + (f": {text}" if text else ""))
    err.__cause__ = exc
    return err


def batch_outputs(inputs: int, outputs: Any) -> Sequence[Any]:
    if not isinstance(outputs, (Sequence, *_array_like())) or isinstance(outputs, str | bytes):
        raise ModelError("predict", f"batched predict must return a list of {inputs} outputs, "
                                    f"returned a {type(outputs).__name__}")
    if len(outputs) != inputs:  # type: ignore[arg-type]
        raise ModelError("predict", f"batched predict returned {len(outputs)} outputs for a batch of "  # type: ignore[arg-type]
                                    f"{inputs} inputs; it must return one output per input, in order")
    return outputs  # type: ignore[return-value]


def _array_like() -> tuple[type, ...]:
    import sys

    np = sys.modules.get("numpy")
    return (np.ndarray,) if np is not None else ()


class _Predictor:
    """What both kinds share: admission (max_queue), liveness checks and batch assembly."""

    def __init__(self, fn: Callable[[Any], Any], *, streams: bool, slots: int, batching: Batching | None,
                 max_queue: int | None, stats: RuntimeStats, loop: asyncio.AbstractEventLoop) -> None:
        self._fn = fn
        self._streams = streams
        self._slots = slots
        self._batching = batching
        self._max_queue = max_queue
        self._stats = stats
        self._loop = loop

    _queue: queue.SimpleQueue[Any] | asyncio.Queue[Any]

    def inline(self, value: Any, gone: Callable[[], bool] | None) -> Any:
        """Predict's output for ``value``, called right here when that is allowed now, else QUEUE."""
        return QUEUE

    async def run(self, value: Any, deadline: float | None, gone: Callable[[], bool] | None) -> Any:
        """Predict one input (through the queue) and return its output, or a ChunkStream."""
        job = Job(value, self._loop.create_future(), deadline, gone)
        self.submit(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True  # a queued job is dropped; a running predict finishes unheard
            raise

    @property
    def waiting(self) -> int:
        """Jobs waiting for a slot."""
        return self._queue.qsize()

    def submit(self, job: Job) -> None:
        self.admit()
        if self._batching is not None:
            job.enqueued = time.monotonic()
        self._queue.put_nowait(job)

    def admit(self) -> None:
        """Refuse at once, before any work, when the queue is already full."""
        if self._max_queue is not None and self.waiting >= self._max_queue:
            self._stats.rejected += 1
            raise QueueFullError(f"{self.waiting} requests are already waiting for predict "
                                 f"(runtime.max_queue is {self._max_queue}); retry shortly.")

    def _live(self, job: Job, now: float) -> bool:
        if job.cancelled or (job.gone is not None and job.gone()):
            job.cancelled = True
            self._fail(job, ClientGone())
            return False
        if job.deadline is not None and now > job.deadline:
            self._stats.timed_out += 1
            self._fail(job, DeadlineExceeded("the request timed out while waiting for predict."))
            return False
        return True

    def _fail(self, job: Job, exc: BaseException) -> None:
        raise NotImplementedError

    def _call_batch(self, jobs: list[Job]) -> None:
        """Call predict on a list of jobs' inputs and hand each job its own output."""
        start = self._batch_started(jobs)
        try:
            outputs = self._fn([job.input for job in jobs])
        except BaseException as exc:  # noqa: BLE001 - the user's error becomes every job's answer
            self._batch_done(jobs, start, None, exc)
        else:
            self._batch_done(jobs, start, outputs, None)

    def _batch_started(self, jobs: list[Job]) -> float:
        self._stats.batch_sizes.observe(len(jobs))
        self._stats.predicting += len(jobs)
        return time.perf_counter()

    def _batch_done(self, jobs: list[Job], start: float, outputs: Any, error: BaseException | None) -> None:
        self._stats.predicting -= len(jobs)
        self._stats.stages["predict"].observe(time.perf_counter() - start)
        try:
            if error is not None:
                raise user_error("predict", error)
            checked = batch_outputs(len(jobs), outputs)
        except KingpostError as err:
            for job in jobs:
                self._fail(job, err)
        else:
            for job, output in zip(jobs, checked, strict=True):
                self._deliver(job, output)

    def _deliver(self, job: Job, value: Any) -> None:
        raise NotImplementedError


class ThreadPredictor(_Predictor):
    """Sync predict on ``slots`` dedicated threads, or on the loop while it is faster than a hand-off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._outstanding = 0  # jobs submitted and not yet settled; read and written on the loop only
        self._fast = 0  # consecutive calls under INLINE_MAX_S (written by the predict threads too)
        inline = not self._streams and self._batching is None
        self._inline_after = INLINE_AFTER if inline else INLINE_AFTER_MAX + 1
        self._threads = [threading.Thread(target=self._work, name=f"kingpost-predict-{i}", daemon=True)
                         for i in range(self._slots)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)

    def submit(self, job: Job) -> None:
        super().submit(job)
        self._outstanding += 1

    def inline(self, value: Any, gone: Callable[[], bool] | None) -> Any:
        # The loop is the only submitter, so while predict runs here no job can start on a thread:
        # with fewer than `slots` jobs outstanding, calling predict now keeps within the slots.
        if self._fast < self._inline_after or self._outstanding >= self._slots:
            return QUEUE
        if gone is not None and gone():
            raise ClientGone()
        output = self._call_inline(value)
        if type(output) is not GeneratorType:
            return output
        job = _PumpJob(output, self._loop.create_future(), None, gone)  # a thread drives the stream,
        job.stream = ChunkStream(job)  # holding a slot until it ends
        self.submit(job)
        return job.stream

    def _call_inline(self, value: Any) -> Any:
        stats = self._stats
        stats.predicting += 1
        start = time.perf_counter()
        try:
            return self._fn(value)
        except BaseException as exc:  # noqa: BLE001 - answered as on a predict thread; user_error keeps the cause
            raise user_error("predict", exc)  # noqa: B904
        finally:
            elapsed = time.perf_counter() - start
            stats.predicting -= 1
            stats.stages["predict"].observe(elapsed)
            if elapsed < INLINE_MAX_S:
                self._fast += 1
            else:  # it blocked the loop: back to the threads, and longer before trying again
                self._fast = 0
                self._inline_after = min(self._inline_after * 4, INLINE_AFTER_MAX)

    def _deliver(self, job: Job, value: Any) -> None:
        self._loop.call_soon_threadsafe(self._settle, job.future, value)

    def _fail(self, job: Job, exc: BaseException) -> None:
        self._loop.call_soon_threadsafe(self._settle_error, job.future, exc)

    def _settle(self, future: asyncio.Future[Any], value: Any) -> None:
        self._outstanding -= 1
        resolve(future, value)

    def _settle_error(self, future: asyncio.Future[Any], exc: BaseException) -> None:
        self._outstanding -= 1
        reject(future, exc)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is _STOP:
                return
            if type(job) is _PumpJob:
                self._pump(job, job.input, job.stream)
            elif self._batching is not None:
                jobs, stop = self._gather(job)
                now = time.monotonic()
                jobs = [j for j in jobs if self._live(j, now)]
                if jobs:
                    self._call_batch(jobs)
                if stop:
                    return
            elif self._live(job, time.monotonic()):
                self._call_one(job)

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        assert self._batching is not None
        jobs = [first]
        until = first.enqueued + self._batching.max_wait_ms / 1000
        while len(jobs) < self._batching.max_batch_size:
            remaining = until - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _call_one(self, job: Job) -> None:
        self._stats.predicting += 1
        start = time.perf_counter()
        try:
            output = self._fn(job.input)
        except BaseException as exc:  # noqa: BLE001
            error: BaseException | None = exc
        else:
            error = None
        # Timed before the hand-back: waking the loop makes this thread wait for the GIL.
        self._fast = self._fast + 1 if time.perf_counter() - start < INLINE_MAX_S else 0
        try:
            if error is not None:
                self._fail(job, user_error("predict", error))
            elif self._streams or type(output) is GeneratorType:  # Truss streams a returned generator too
                self._pump(job, output)
            else:
                self._deliver(job, output)
        finally:
            self._stats.predicting -= 1
            self._stats.stages["predict"].observe(time.perf_counter() - start)

    def _pump(self, job: Job, generator: Any, stream: ChunkStream | None = None) -> None:
        """Drive a sync generator on this predict thread (holding the slot) into a ChunkStream."""
        loop = self._loop
        if stream is None:
            stream = ChunkStream(job)
            loop.call_soon_threadsafe(resolve, job.future, stream)
        last: Any = _END
        try:
            try:
                for chunk in generator:
                    if job.cancelled:
                        break
                    loop.call_soon_threadsafe(stream.put, chunk)
            finally:
                generator.close()
        except BaseException as exc:  # noqa: BLE001
            last = _Failure(user_error("predict", exc))
        loop.call_soon_threadsafe(self._stream_end, stream, last)

    def _stream_end(self, stream: ChunkStream, last: Any) -> None:
        self._outstanding -= 1  # the slot is free only now, not when the stream was handed over
        stream.put(last)


class AsyncPredictor(_Predictor):
    """Async predict on ``slots`` worker tasks on the event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._tasks = [self._loop.create_task(self._work()) for _ in range(self._slots)]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _deliver(self, job: Job, value: Any) -> None:
        resolve(job.future, value)

    def _fail(self, job: Job, exc: BaseException) -> None:
        reject(job.future, exc)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            if self._batching is not None:
                jobs = await self._gather(job)
                now = time.monotonic()
                jobs = [j for j in jobs if self._live(j, now)]
                if jobs:
                    await self._call_batch_async(jobs)
            elif self._live(job, time.monotonic()):
                await self._call_one(job)

    async def _gather(self, first: Job) -> list[Job]:
        assert self._batching is not None
        jobs = [first]
        until = first.enqueued + self._batching.max_wait_ms / 1000
        while len(jobs) < self._batching.max_batch_size:
            remaining = until - time.monotonic()
            try:
                if remaining > 0:
                    jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                else:
                    jobs.append(self._queue.get_nowait())
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
        return jobs

    async def _call_batch_async(self, jobs: list[Job]) -> None:
        start = self._batch_started(jobs)
        try:
            outputs = await self._fn([job.input for job in jobs])
        except Exception as exc:  # noqa: BLE001 - the user's error becomes every job's answer
            self._batch_done(jobs, start, None, exc)
        else:
            self._batch_done(jobs, start, outputs, None)

    async def _call_one(self, job: Job) -> None:
        self._stats.predicting += 1
        start = time.perf_counter()
        try:
            if self._streams:
                await self._pump(job, self._fn(job.input))
            else:
                output = await self._fn(job.input)
                if type(output) is AsyncGeneratorType:  # Truss streams a returned generator too
                    await self._pump(job, output)
                else:
                    self._deliver(job, output)
        except Exception as exc:  # noqa: BLE001
            self._fail(job, user_error("predict", exc))
        finally:
            self._stats.predicting -= 1
            self._stats.stages["predict"].observe(time.perf_counter() - start)

    async def _pump(self, job: Job, generator: Any) -> None:
        stream = ChunkStream(job)
        resolve(job.future, stream)
        try:
            async for chunk in generator:
                if job.cancelled:
                    break
                stream.put(chunk)
        except Exception as exc:  # noqa: BLE001
            stream.put(_Failure(user_error("predict", exc)))
        else:
            stream.put(_END)
        finally:
            await generator.aclose()


def resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
