"""A sync predict on ``slots`` dedicated threads, or on the loop while it is faster than a hand-off."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from time import perf_counter
from types import GeneratorType
from typing import Any

from kingpost.concurrency import reject, resolve
from kingpost.disconnect import current
from kingpost.errors import ClientGone, KingpostError
from kingpost.predictor.batching import batch_inputs, hand_out, window
from kingpost.predictor.held import Held, hold, is_streaming_response
from kingpost.predictor.jobs import QUEUE, Job, Predictor
from kingpost.predictor.streams import EMPTY, END, ChunkStream, Failure, LoopDriver

_STOP = object()
logger = logging.getLogger("kingpost")

INLINE_MAX_S = float(os.environ.get("KINGPOST_INLINE_MAX_S", "0.0001"))
"""A sync predict (or a generator predict's ``next()``) is called on the event loop only while its
calls take less than this: a hand-off to a predict thread and back costs ~10-15 us of CPU and two
context switches, and a call this short delays the loop's other requests less than that hand-off
would. ``$KINGPOST_INLINE_MAX_S`` sets it (0 keeps predict off the loop)."""
INLINE_AFTER = 32
"""Consecutive calls under INLINE_MAX_S before predict is called on the loop; multiplied by 4 (up to
INLINE_AFTER_MAX) each time a call on the loop took longer, so a predict that is only sometimes slow
stops blocking the loop."""
INLINE_AFTER_MAX = 1 << 20
LOOP_TURN_S = 0.002
SLOW_SHARE = 8
"""A stream stays on the loop while at most one ``next()`` in this many (plus one) is over
INLINE_MAX_S: on a busy machine a 10 us call is sometimes preempted for a few ms, which is no
reason to send a fast generator back to a thread (nothing else would have run on the loop then)."""
HAND_OFF_S = 0.005
"""... and while no single ``next()`` takes longer than this."""
"""A generator driven on the loop gives the loop a turn at least this often (its chunks' sends need
not: a socket that takes them at once never makes the sender wait)."""


class _PumpJob(Job):
    """A generator for a predict thread to drive into ``stream``: one a predict called on the loop
    returned, or one the loop was driving until a ``next()`` proved slow (``started`` is then its
    predict's start, for Hook.finished once it ends)."""

    __slots__ = ("started", "stream")
    stream: ChunkStream
    started: float | None


class ThreadPredictor(Predictor):
    """Sync predict on ``slots`` dedicated threads, or on the loop while it is faster than a hand-off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._outstanding = 0  # jobs submitted and not yet settled; read and written on the loop only
        self._fast = 0  # consecutive calls under INLINE_MAX_S (written by the predict threads too)
        self._parked: deque[Job] | None = None  # jobs submitted while the loop drives a generator (its slot)
        # A generator predict whose streams proved fast is driven on the loop, one slot only: with more,
        # a thread could not tell that the loop holds one of them.
        loop_streams = self._streams and self._slots == 1 and self._batching is None
        inline = (not self._streams or loop_streams) and self._batching is None
        self._inline_after = INLINE_AFTER if inline else INLINE_AFTER_MAX + 1
        if loop_streams:
            self.inline = self._inline_stream  # type: ignore[method-assign]
        self._threads = [threading.Thread(target=self._work, name=f"kingpost-predict-{i}", daemon=True)
                         for i in range(self._slots)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)

    def join(self, timeout: float) -> None:
        """Block until the predict threads have ended (after :meth:`stop`), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def never_inline(self) -> None:
        """Always hand predict to its threads (a target that waits on the loop would deadlock there)."""
        self._inline_after = INLINE_AFTER_MAX + 1

    def hold_responses(self) -> None:
        """Keep a slot until a StreamingResponse predict returned has been sent (decided at load, or
        once a plain bundle's predict first returned one); predict is never called on the loop then."""
        self.never_inline()
        self._call_one = self._call_one_holding  # type: ignore[method-assign]

    def submit(self, job: Job) -> None:
        parked = self._parked
        if parked is not None:  # the loop drives a generator: its slot is taken until it ends
            self.admit()
            parked.append(job)
        else:
            super().submit(job)
        self._outstanding += 1

    @property
    def waiting(self) -> int:
        parked = self._parked
        return max(0, self._queue.qsize() + (len(parked) if parked is not None else 0) - self._abandoned)

    def _unpark(self, first: Job | None = None) -> None:
        """The loop no longer holds the slot: the jobs that waited for it go to the threads (``first`` first)."""
        parked, self._parked = self._parked, None
        put = self._queue.put
        if first is not None:
            put(first)
        if parked:
            for job in parked:
                put(job)

    def _inline_stream(self, value: Any, gone: Callable[[], bool] | None) -> Any:
        """``inline`` for a generator predict: drive its stream on the loop while its chunks come fast."""
        if self._fast < self._inline_after or self._outstanding:
            return QUEUE
        if gone is not None and gone():
            raise ClientGone()
        stream = self._drive_on_loop(value, gone)
        self._outstanding += 1
        self._parked = deque()
        return stream

    def _drive_on_loop(self, value: Any, gone: Callable[[], bool] | None) -> ChunkStream:
        """A stream whose reader's take() calls the generator predict(value) makes, on the loop."""
        hook = self._hook
        start = hook.started()
        try:
            generator = hook.fn(value)  # calling a generator function runs none of its body
        except BaseException as exc:  # noqa: BLE001 - the call itself failed (its signature)
            hook.finished(start)
            raise hook.error(exc)  # noqa: B904
        job = _PumpJob(generator, self._loop.create_future(), None, gone)
        job.started = start
        stream = job.stream = ChunkStream(job, self._loop, self._room)
        stream._driver = _LoopPump(self, job, stream)
        return stream

    def _loop_stream_ended(self, failed: bool) -> None:
        """On the loop: a stream driven here ended; the slot goes to the next parked job, on the loop
        while streams stay fast, else every parked job goes to the predict thread."""
        self._outstanding -= 1
        if failed:
            self._fast = 0
        parked = self._parked
        now = time.monotonic()
        while parked and self._fast >= self._inline_after:
            job = parked.popleft()
            if not self._live(job, now):  # its caller left, or its deadline passed: settled, not run
                continue
            if job.future.done():  # cancelled a moment ago (its task has not run since)
                self._settle_dropped(job)
                continue
            try:
                stream = self._drive_on_loop(job.input, job.gone)  # the job's count is now the stream's
            except KingpostError as err:
                self._settle_error(job.future, err)
                continue
            job.input = None
            job.runner = stream  # a caller cancelled before it resumes with the stream closes it
            job.future.set_result(stream)
            return
        self._unpark()

    def inline(self, value: Any, gone: Callable[[], bool] | None) -> Any:
        # The loop is the only submitter, so while predict runs here no job can start on a thread:
        # with fewer than `slots` jobs outstanding, calling predict now keeps within the slots.
        if self._fast < self._inline_after or self._outstanding >= self._slots:
            return QUEUE
        if gone is not None and gone():
            raise ClientGone()
        hook = self._hook
        try:
            output = hook.call(value)  # answered as on a predict thread
        finally:
            if hook.elapsed < INLINE_MAX_S:
                self._fast += 1
            else:  # it blocked the loop: back to the threads, and longer before trying again
                self._fast = 0
                self._inline_after = min(self._inline_after * 4, INLINE_AFTER_MAX)
        if type(output) is not GeneratorType:
            return output
        job = _PumpJob(output, self._loop.create_future(), None, gone)  # a thread drives the stream,
        job.stream = ChunkStream(job, self._loop, self._room)  # holding a slot until it ends
        job.started = None
        self.submit(job)
        return job.stream

    def _deliver(self, job: Job, value: Any) -> None:
        self._loop.call_soon_threadsafe(self._settle, job.future, value)

    def _fail(self, job: Job, exc: BaseException) -> None:
        self._loop.call_soon_threadsafe(self._settle_error, job.future, exc)

    def _drop(self, job: Job) -> None:
        self._loop.call_soon_threadsafe(self._settle_dropped, job)

    def _settle_dropped(self, job: Job) -> None:
        self._outstanding -= 1
        self._dropped(job)

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
                if job.started is not None:  # a stream the loop began: its predict ends now
                    self._hook.finished(job.started)
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
        for remaining in window(first, self._batching):
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _call_batch(self, jobs: list[Job]) -> None:
        """Call predict on a list of jobs' inputs and hand each job its own output."""
        outputs, error = None, None
        try:
            outputs = self._hook.call(batch_inputs(self._stats, jobs), len(jobs))
        except KingpostError as err:
            error = err
        hand_out(jobs, outputs, error, self._deliver, self._fail)

    def _call_one(self, job: Job) -> None:
        if self._streams:
            self._call_generator(job)
            return
        current.job = job  # for kingpost.client_disconnected()
        try:
            output = self._hook.call(job.input)
        except KingpostError as err:
            self._fail(job, err)
            return
        finally:  # timed before the hand-back: waking the loop makes this thread wait for the GIL
            current.job = None
            self._fast = self._fast + 1 if self._hook.elapsed < INLINE_MAX_S else 0
        if type(output) is GeneratorType:  # Truss streams a returned generator too
            self._pump(job, output)
        elif job.cancelled or (job.gone is not None and job.gone()):
            self._fail(job, ClientGone())  # no one to answer (a predict that checked client_disconnected)
        else:
            self._deliver(job, output)

    def _call_one_holding(self, job: Job) -> None:
        """``_call_one`` for a predict that may return a StreamingResponse: its slot waits until it is sent."""
        if self._streams:
            self._call_generator(job)
            return
        current.job = job
        try:
            if type(job.input) is Held:  # no predict: this slot sends a response predict already returned
                output, job.input = job.input.response, None
            else:
                output = self._hook.call(job.input)
        except KingpostError as err:
            self._fail(job, err)
            return
        finally:
            current.job = None
        if is_streaming_response(output):
            done = threading.Event()
            hold(output, done.set)
            self._deliver(job, output)
            del output  # a response dropped unsent (its client left) is collected, which frees the slot
            done.wait()
        elif type(output) is GeneratorType:
            self._pump(job, output)
        elif job.cancelled or (job.gone is not None and job.gone()):
            self._fail(job, ClientGone())
        else:
            self._deliver(job, output)

    def _call_generator(self, job: Job) -> None:
        """A generator predict: counted and timed until its stream ends."""
        hook = self._hook
        start = hook.started()
        try:
            fast = self._pump(job, hook.fn(job.input))  # calling a generator function runs none of its body
        except BaseException as exc:  # noqa: BLE001 - the call itself failed (its signature)
            self._fail(job, hook.error(exc))
            fast = False
        finally:
            hook.finished(start)
        self._fast = self._fast + 1 if fast else 0

    def _pump(self, job: Job, generator: Any, stream: ChunkStream | None = None) -> bool:
        """Drive a sync generator on this predict thread (holding the slot) into a ChunkStream.

        The stream is handed to the waiting request once its first chunk is in it (one wake of the
        loop for both), and the generator goes on once that chunk was taken: holding the GIL, it would
        otherwise delay the first chunk by up to a switch interval. Later chunks wake the loop only
        when no wake is pending (ChunkStream).

        Returns whether the generator was fast enough to be driven on the loop: its first ``next()``
        under INLINE_MAX_S, none over HAND_OFF_S and at most one in SLOW_SHARE of the others over
        INLINE_MAX_S (a ``next()`` here can also be slow because the loop held the GIL; on the loop,
        the same rule hands the rest back to a thread, so a wrong guess costs little).
        """
        loop = self._loop
        unheard = stream is None  # the request still awaits job.future
        if stream is None:
            stream = ChunkStream(job, loop, self._room)
            stream.defer_wake()  # the hand-over wakes the reader
        last: Any = END
        current.job = job
        first = True
        chunks = slow = 0
        try:
            try:
                put = stream.put_from_thread
                began = perf_counter()
                for chunk in generator:
                    took = perf_counter() - began
                    if took > INLINE_MAX_S:
                        slow += 1 if chunks and took < HAND_OFF_S else 1 << 30
                    chunks += 1
                    if not put(chunk):
                        break
                    if first:  # the first chunk leaves before the generator goes on (the GIL is ours)
                        first = False
                        if unheard:
                            unheard = False
                            loop.call_soon_threadsafe(_hand_over, job.future, stream)
                        stream.wait_taken()
                    began = perf_counter()
            finally:
                current.job = None
                generator.close()
        except BaseException as exc:  # noqa: BLE001
            last = Failure(self._hook.error(exc))
            slow = 1 << 30
        if unheard:
            loop.call_soon_threadsafe(_hand_over, job.future, stream)
        stream.end_from_thread(last, self._stream_end)
        return slow * SLOW_SHARE <= chunks

    def _stream_end(self, stream: ChunkStream) -> None:
        self._outstanding -= 1  # the slot is free only now, not when the stream was handed over


class _LoopPump(LoopDriver):
    """Drives a fast generator predict on the loop (``ThreadPredictor._inline_stream``), holding the slot.

    A ``next()`` over HAND_OFF_S, or more than one in SLOW_SHARE over INLINE_MAX_S, hands the rest
    of the generator to a predict thread (ahead of the jobs that waited for the slot), and the
    predictor waits longer before trying the loop again.
    """

    __slots__ = ("_job", "_made", "_next", "_predictor", "_slow", "_stream", "_turn_at")

    def __init__(self, predictor: ThreadPredictor, job: _PumpJob, stream: ChunkStream) -> None:
        self._predictor = predictor
        self._job = job
        self._next = job.input.__next__
        self._stream = stream
        self._turn_at = perf_counter() + LOOP_TURN_S
        self._made = 0
        self._slow = 0

    def pull(self) -> Any:
        start = perf_counter()
        if start > self._turn_at:  # the loop is owed a turn: the reader's wait() gives it
            self._turn_at = start + LOOP_TURN_S
            return EMPTY
        current.job = self._job  # for kingpost.client_disconnected()
        try:
            chunk = self._next()
        except StopIteration:
            self._end()
            return END
        except Exception as exc:  # noqa: BLE001 - the reader raises it, as kingpost's error
            self._end(failed=True)
            raise self._predictor._hook.error(exc)  # noqa: B904
        except BaseException:
            self._end(failed=True)
            raise
        finally:
            current.job = None
        self._made += 1
        took = perf_counter() - start
        if took > INLINE_MAX_S:
            self._slow += 1
            if took > HAND_OFF_S or self._slow * SLOW_SHARE > self._made + SLOW_SHARE:
                self._to_thread()
        return chunk

    def close(self) -> None:
        current.job = self._job
        try:
            self._job.input.close()
        except Exception:  # its reader left: a generator that fails while closing is only logged
            logger.warning("a streaming predict failed while closing", exc_info=True)
        finally:
            current.job = None
        self._end()

    def _end(self, failed: bool = False) -> None:
        stream, job, predictor = self._stream, self._job, self._predictor
        stream._driver = None
        stream._done = True
        job.input = None
        predictor._hook.finished(job.started)  # type: ignore[arg-type]
        predictor._loop_stream_ended(failed)

    def _to_thread(self) -> None:
        """This generator is slower than a hand-off: a predict thread drives the rest of it."""
        predictor = self._predictor
        self._stream._driver = None
        predictor._fast = 0
        predictor._inline_after = min(predictor._inline_after * 4, INLINE_AFTER_MAX)
        predictor._unpark(self._job)  # its slot passes to the thread that takes it first


def _hand_over(future: asyncio.Future[Any], stream: ChunkStream) -> None:
    if future.done():  # the request was cancelled (its client left) before the first chunk: no reader
        stream.abandon()
    else:
        future.set_result(stream)
        stream.wake()
