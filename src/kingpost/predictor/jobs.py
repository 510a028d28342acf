"""One request's trip through predict (:class:`Job`), and the queue of jobs both predictors share:
admission (``max_queue``), waiting, and the liveness check made just before predict runs."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Callable
from typing import Any

from kingpost.config import Batching
from kingpost.errors import ClientGone, DeadlineExceeded, QueueFullError
from kingpost.hooks import Hook

QUEUE: Any = object()
"""What :meth:`Predictor.inline` returns when predict cannot be called on the loop now."""


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


class Predictor:
    """What both kinds share: admission (max_queue), liveness checks and the job queue."""

    def __init__(self, hook: Hook, *, slots: int, batching: Batching | None, max_queue: int | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._hook = hook
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

    def stop(self) -> None:
        raise NotImplementedError

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

    def _deliver(self, job: Job, value: Any) -> None:
        raise NotImplementedError
