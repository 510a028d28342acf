"""An async predict on ``slots`` worker tasks on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import AsyncGeneratorType
from typing import Any

from kingpost.concurrency import reject, resolve
from kingpost.errors import ClientGone, KingpostError
from kingpost.predictor.batching import batch_inputs, hand_out, window
from kingpost.predictor.held import Held, hold, is_streaming_response
from kingpost.predictor.jobs import Job, Predictor
from kingpost.predictor.streams import END, ChunkStream, Failure


class TaskPredictor(Predictor):
    """Async predict on ``slots`` worker tasks on the event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._tasks = [self._loop.create_task(self._work()) for _ in range(self._slots)]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def hold_responses(self) -> None:
        """Keep a slot until a StreamingResponse predict returned has been sent (decided at load, or
        once a plain bundle's predict first returned one)."""
        self._call_one_job = self._call_one_job_holding  # type: ignore[method-assign]

    def _deliver(self, job: Job, value: Any) -> None:
        resolve(job.future, value)

    def _fail(self, job: Job, exc: BaseException) -> None:
        reject(job.future, exc)

    def _drop(self, job: Job) -> None:
        self._dropped(job)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            if self._batching is not None:
                jobs = await self._gather(job)
                now = time.monotonic()
                jobs = [j for j in jobs if self._live(j, now)]
                if jobs:
                    await self._call_batch(jobs)
            elif self._live(job, time.monotonic()):
                await self._call_one(job)

    async def _gather(self, first: Job) -> list[Job]:
        assert self._batching is not None
        jobs = [first]
        for remaining in window(first, self._batching):
            try:
                if remaining > 0:
                    jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                else:
                    jobs.append(self._queue.get_nowait())
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
        return jobs

    async def _call_batch(self, jobs: list[Job]) -> None:
        outputs, error = None, None
        try:
            outputs = await self._hook.acall(batch_inputs(self._stats, jobs), len(jobs))
        except KingpostError as err:
            error = err
        hand_out(jobs, outputs, error, self._deliver, self._fail)

    async def _call_one(self, job: Job) -> None:
        job.runner = asyncio.current_task()  # job.abandon() cancels this predict, not the worker
        try:
            await self._call_one_job(job)
        except asyncio.CancelledError:
            if not job.cancelled:
                raise  # the worker itself is stopping
            uncancel = getattr(asyncio.current_task(), "uncancel", None)  # Python >= 3.11
            if uncancel is not None:
                uncancel()  # only this job's predict was cancelled (its client left), not the worker
            self._fail(job, ClientGone())
        finally:
            job.runner = None

    async def _call_one_job(self, job: Job) -> None:
        hook = self._hook
        if self._streams:  # a generator predict: counted and timed until its stream ends
            start = hook.started()
            try:
                await self._pump(job, hook.fn(job.input))
            except Exception as exc:  # noqa: BLE001 - the call itself failed (its signature)
                self._fail(job, hook.error(exc))
            finally:
                hook.finished(start)
            return
        try:
            output = await hook.acall(job.input)
        except KingpostError as err:
            self._fail(job, err)
        else:
            if type(output) is AsyncGeneratorType:  # Truss streams a returned generator too
                await self._pump(job, output)
            else:
                self._deliver(job, output)

    async def _call_one_job_holding(self, job: Job) -> None:
        """``_call_one_job`` for a predict that may return a StreamingResponse: the slot waits until it is sent."""
        if self._streams:
            await TaskPredictor._call_one_job(self, job)
            return
        try:
            if type(job.input) is Held:  # no predict: this slot sends a response predict already returned
                output, job.input = job.input.response, None
            else:
                output = await self._hook.acall(job.input)
        except KingpostError as err:
            self._fail(job, err)
            return
        if is_streaming_response(output):
            done = asyncio.Event()
            loop = self._loop

            def release() -> None:  # sent on the loop, or collected on whatever thread the GC ran
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing waits any more
                    loop.call_soon_threadsafe(done.set)
            hold(output, release)
            self._deliver(job, output)
            del output  # a response dropped unsent (its client left) is collected, which frees the slot
            await done.wait()
        elif type(output) is AsyncGeneratorType:
            await self._pump(job, output)
        else:
            self._deliver(job, output)

    async def _pump(self, job: Job, generator: Any) -> None:
        stream = ChunkStream(job, self._loop, self._room)
        resolve(job.future, stream)
        put, full = stream.put, stream.full
        first = True
        try:
            async for chunk in generator:
                if job.cancelled:
                    break
                if full():
                    await stream.room()
                    if job.cancelled:
                        break
                put(chunk)
                if first:  # let the request send its headers and this chunk before the generator goes on
                    first = False
                    await asyncio.sleep(0)
        except Exception as exc:  # noqa: BLE001
            stream.put(Failure(self._hook.error(exc)))
        else:
            stream.put(END)
        finally:
            await generator.aclose()
