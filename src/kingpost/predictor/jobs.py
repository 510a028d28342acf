"""One request's trip through predict (:class:`Job`), and the queue of jobs both predictors share:
admission (``max_queue``), waiting, and the liveness check made just before predict runs."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

from kingpost.concurrency import reject
from kingpost.config import Batching
from kingpost.errors import ClientGone, DeadlineExceeded, QueueFullError
from kingpost.hooks import Hook
from kingpost.predictor.held import Held

QUEUE: Any = object()
"""What :meth:`Predictor.inline` returns when predict cannot be called on the loop now."""


class Runner(Protocol):
    def cancel(self) -> Any: ...


class Job:
    """One request's trip through predict."""

    __slots__ = ("cancelled", "counted", "deadline", "dequeued", "enqueued", "future", "gone", "input", "runner")

    def __init__(self, value: Any, future: asyncio.Future[Any], deadline: float | None,
                 gone: Callable[[], bool] | None = None) -> None:
        self.input = value
        self.future = future
        self.deadline = deadline
        self.gone = gone  # the front door's "has the client gone away?", asked before predict runs
        self.cancelled = False
        self.enqueued = 0.0
        self.dequeued = False  # set by the worker before it reads `cancelled`
        self.counted = False  # abandoned while queued: counted out of `waiting` until a worker drops it
        # What runs its predict, cancelled when the caller leaves: the worker task of an async predict,
        # or the stream a generator driven on the loop feeds (ChunkStream.cancel)
        self.runner: Runner | None = None

    def abandon(self) -> None:
        """The caller is gone: drop the job if queued, cancel its async predict if running."""
        self.cancelled = True
        if self.runner is not None:
            self.runner.cancel()


class Predictor:
    """What both kinds share: admission (max_queue), liveness checks and the job queue."""

    def __init__(self, hook: Hook, *, slots: int, batching: Batching | None, max_queue: int | None,
                 loop: asyncio.AbstractEventLoop, stream_buffer: int = 0) -> None:
        self._hook = hook
        self._room = stream_buffer  # bytes a stream may hold unread before its generator waits (0: any)
        self._abandoned = 0  # queued jobs whose caller left; written on the loop only
        self._streams = hook.kind.streams
        self._slots = slots
        self._batching = batching
        self._max_queue = max_queue
        self._stats = hook.stats
        self._loop = loop

    _queue: queue.SimpleQueue[Any] | asyncio.Queue[Any]

    def inline(self, value: Any, gone: Callable[[], bool] | None) -> Any:
        """Predict's output for ``value``, called right here when that is allowed now, else QUEUE."""
        return QUEUE

    def hold_responses(self) -> None:
        """From now on a StreamingResponse returned by predict keeps its slot until it has been sent."""
        raise NotImplementedError

    async def hold(self, response: Any, gone: Callable[[], bool] | None) -> None:
        """Wait for a slot (in turn, like any predict) and keep it until ``response`` has been sent."""
        self.hold_responses()
        await self.run(Held(response), None, gone)

    async def run(self, value: Any, deadline: float | None, gone: Callable[[], bool] | None) -> Any:
        """Predict one input (through the queue) and return its output, or a ChunkStream."""
        job = Job(value, self._loop.create_future(), deadline, gone)
        self.submit(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.abandon()  # a queued job is dropped; an async predict is cancelled, a sync one finishes unheard
            if not job.dequeued:  # still queued: it stops counting now and lets go of its input
                job.counted = True
                job.input = None
                self._abandoned += 1
            raise

    @property
    def waiting(self) -> int:
        """Jobs waiting for a slot (those whose caller left are not counted)."""
        return max(0, self._queue.qsize() - self._abandoned)

    def _dropped(self, job: Job) -> None:
        """On the loop: a worker took an abandoned job out of the queue."""
        if job.counted:
            job.counted = False
            self._abandoned -= 1
        reject(job.future, ClientGone())

    def stop(self) -> None:
        raise NotImplementedError

    def join(self, timeout: float) -> None:
        """Block until what :meth:`stop` stopped has ended (nothing to wait for by default)."""

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
        job.dequeued = True  # before `cancelled` is read: see run()
        if job.cancelled or (job.gone is not None and job.gone()):
            job.cancelled = True
            self._drop(job)
            return False
        if job.deadline is not None and now > job.deadline:
            self._stats.timed_out += 1
            self._fail(job, DeadlineExceeded("the request timed out while waiting for predict."))
            return False
        return True

    def _fail(self, job: Job, exc: BaseException) -> None:
        raise NotImplementedError

    def _drop(self, job: Job) -> None:
        """A worker found ``job`` abandoned: settle it (and its count) on the loop."""
        raise NotImplementedError

    def _deliver(self, job: Job, value: Any) -> None:
        raise NotImplementedError
