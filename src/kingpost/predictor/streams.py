"""The output of a streaming predict, as the runtime hands it to every front door.

A chunk's trip costs what the server's own send costs, measured (``bench/stream_profile.py``):

- Chunks wait in a ``deque``. A predict thread appends to it and wakes the loop only when no wake is
  already pending (``_wake_pending``), so chunks made while the loop is busy cross in one hop
  instead of one ``call_soon_threadsafe`` each (a self-pipe write and a loop callback).
- The reader takes chunks with :meth:`ChunkStream.take`, a plain call; it awaits
  (:meth:`ChunkStream.wait`, one future) only when none is ready. ``async for`` works too, for the
  front doors that are not on the hot path.
- Backpressure is counted in bytes (``runtime.limits.stream_buffer_bytes``), since memory is what it
  bounds: a chunk costs its length (text: its length in characters) plus ``CHUNK_OVERHEAD`` (its
  object and its slot in the deque, so a stream of tiny tokens is bounded too); a chunk that is
  neither bytes nor text (a dict, a number) is counted as ``OTHER_CHUNK_BYTES``. The producer adds
  a chunk's cost, the reader subtracts it, each to a counter only it writes (no lock between the
  predict thread and the loop). While ``room`` bytes are unread the producer waits before its next
  chunk (so at most ``room`` plus one chunk wait), a predict thread on a lock, an async generator on
  a future, and the reader wakes it once half the room is free (woken at every chunk taken, a
  predict thread and the loop would trade the GIL once per chunk: 1-3 µs of CPU each, measured).
  A room of 16 chunks (the bound before) made a sync generator faster than its client wait every 8
  chunks, each wait a GIL hand-over between two threads; 1 MiB is ~15,000 short tokens of room and
  one 1 MiB chunk (measured: ``bench/stream_profile.py``, and ``bench/run.py``'s stream cases).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from kingpost.errors import user_error

if TYPE_CHECKING:
    from kingpost.predictor.jobs import Job

END = object()
"""Put into a stream after its last chunk."""
EMPTY = object()
"""What :meth:`ChunkStream.take` returns while no chunk is ready."""


CHUNK_OVERHEAD = 64
"""Bytes a chunk is counted at beyond its payload: a bytes/str object's header and its deque slot."""
OTHER_CHUNK_BYTES = 1024
"""Bytes a chunk that is neither bytes nor text (a dict, a list, a number) is counted at."""


def chunk_cost(item: Any) -> int:
    """What ``item`` counts against a stream's room, in bytes (0 for END and a Failure)."""
    t = type(item)
    if t is bytes or t is str or t is bytearray:
        return len(item) + CHUNK_OVERHEAD
    if t is memoryview:
        return int(item.nbytes) + CHUNK_OVERHEAD
    if item is END or t is Failure:
        return 0
    return OTHER_CHUNK_BYTES


class Failure:
    """Put into a stream when the generator raised: the reader raises ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ChunkStream:
    """The output of a streaming predict, read with ``async for``; ``aclose()`` abandons it.

    While ``room`` bytes of chunks (:func:`chunk_cost`) are unread (0: no bound), the producer waits in
    :meth:`put_from_thread` (a predict thread) or :meth:`put_async` (an async generator), so a client
    that reads slowly slows the generator instead of filling memory.
    """

    __slots__ = ("_blocked", "_cap", "_done", "_driver", "_job", "_loop", "_put", "_ready", "_resume_at", "_space",
                 "_space_future", "_taken", "_waiter", "_wake_pending")

    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop, room: int = 0) -> None:
        self._job = job
        self._loop = loop
        self._ready: deque[Any] = deque()
        self._done = False
        self._waiter: asyncio.Future[None] | None = None  # the reader, waiting for a chunk
        self._wake_pending = False  # a predict thread asked the loop to run _wake, which has not run yet
        self._cap = room
        self._put = 0  # bytes of chunks put (chunk_cost); written by the producer only
        self._taken = 0  # bytes of chunks taken; written by the reader only
        self._blocked = False  # the producer waits for room ...
        self._resume_at = 0  # ... until no more than this many bytes are unread (half the room: hysteresis)
        self._space: threading.Lock | None = None  # ... a predict thread, here (held while it may wait)
        self._space_future: asyncio.Future[None] | None = None  # ... an async generator, here
        self._driver: LoopDriver | None = None  # while set, take() calls the generator itself (on the loop)

    # -- the producer ------------------------------------------------------------------------------

    def put(self, item: Any) -> None:
        """On the loop: add ``item`` (a chunk, END or a Failure) without waiting for room."""
        self._put += chunk_cost(item)
        self._ready.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def full(self) -> bool:
        """Whether ``room`` bytes are unread (an async producer then awaits :meth:`room`)."""
        return bool(self._cap) and self._put - self._taken >= self._cap

    async def room(self) -> None:
        """On the loop: until fewer than ``room`` bytes are unread, or the reader left."""
        cap = self._cap
        while cap and self._put - self._taken >= cap and not self._job.cancelled:
            self._resume_at = cap // 2
            self._blocked = True
            self._space_future = self._loop.create_future()
            await self._space_future

    async def put_async(self, item: Any) -> None:
        """On the loop: add a chunk, first waiting while ``room`` bytes are unread (or until the reader left)."""
        await self.room()
        self.put(item)

    def defer_wake(self) -> None:
        """Chunks from a thread wake no one until :meth:`wake` runs (the stream's hand-over does)."""
        self._wake_pending = True

    def put_from_thread(self, item: Any) -> bool:
        """On a predict thread: add a chunk, first waiting for room; False (nothing added) once the reader left."""
        cap = self._cap
        if cap and self._put - self._taken >= cap and not self._wait_room():
            return False
        if self._job.cancelled:
            return False
        t = type(item)
        self._put += len(item) + CHUNK_OVERHEAD if t is str or t is bytes else chunk_cost(item)
        self._ready.append(item)
        if not self._wake_pending:  # else the pending wake will find this chunk too
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake)
        return True

    def end_from_thread(self, item: Any, then: Any = None) -> None:
        """On a predict thread: add END or a Failure, and wake the loop to run ``then(self)`` (or nothing)."""
        self._ready.append(item)
        self._loop.call_soon_threadsafe(self._ended, then)

    def wait_taken(self) -> None:
        """On a predict thread: until the reader took every chunk (or left); the first chunk's way out."""
        if self._ready:
            self._wait_room(1)  # resume at 1 // 2: nothing unread

    def _wait_room(self, cap: int = 0) -> bool:
        space = self._space
        if space is None:  # a lock as a one-shot gate: cheaper to pass than a threading.Event
            space = self._space = threading.Lock()
            space.acquire()
        resume_at = self._resume_at = (cap or self._cap) // 2
        while True:
            self._blocked = True  # set before the count is read again: see take()
            if self._put - self._taken <= resume_at:
                return True
            if self._job.cancelled:
                return False
            space.acquire(timeout=1.0)  # released by the reader (_made_room): at once if it already was

    def wake(self) -> None:
        """On the loop: the reader, if it waits, looks for chunks again."""
        self._wake()

    def _wake(self) -> None:  # on the loop
        self._wake_pending = False  # first: a chunk appended from now on schedules another wake
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _ended(self, then: Any) -> None:  # on the loop
        if then is not None:
            then(self)
        self._wake()

    # -- the reader --------------------------------------------------------------------------------

    def take(self) -> Any:
        """The next chunk if one is ready, else EMPTY; END once the stream ended. Raises the generator's error."""
        ready = self._ready
        if not ready:
            driver = self._driver
            if driver is not None:
                return driver.pull()
            return END if self._done else EMPTY
        item = ready.popleft()
        t = type(item)
        if t is str or t is bytes:
            self._taken += len(item) + CHUNK_OVERHEAD
        elif item is END:
            self._done = True
            return item
        elif t is Failure:
            self._done = True
            raise item.error
        else:
            self._taken += chunk_cost(item)
        if self._blocked and self._put - self._taken <= self._resume_at:
            self._made_room()
        return item

    async def wait(self, timeout: float | None = None) -> None:
        """Until a chunk (or the end) is ready to take; TimeoutError past ``timeout`` seconds."""
        if self._ready or self._done:
            return
        if self._driver is not None:  # take() gave the loop a turn: this is it
            await asyncio.sleep(0)
            return
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _made_room(self) -> None:
        self._blocked = False
        space = self._space
        if space is not None and space.locked():  # only the reader releases it, so this cannot race
            space.release()
        future = self._space_future
        if future is not None:
            self._space_future = None
            if not future.done():
                future.set_result(None)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        item = self.take()
        while item is EMPTY:
            await self.wait()
            item = self.take()
        if item is END:
            raise StopAsyncIteration
        return item

    def abandon(self) -> None:
        """On the loop: no one will read this stream; a producer waiting for room wakes and stops."""
        driver = self._driver
        if driver is not None:  # a generator driven here: closed here, its slot freed
            self._driver = None
            driver.close()
        if not self._done:  # abandoned before its end: stop the generator (an async one at once)
            self._job.abandon()
        self._done = True
        self._job.cancelled = True
        self._made_room()

    async def aclose(self) -> None:
        self.abandon()

    def cancel(self) -> None:
        """As a job's runner: the caller left before it read this stream (its predict resolved it)."""
        self.abandon()


class LoopDriver:
    """What drives a generator on the event loop, one ``next()`` per :meth:`ChunkStream.take`.

    Set as a stream's ``_driver`` by a predictor that found the generator fast (see
    ``ThreadPredictor``): a chunk is made when the reader wants one, so there is nothing to wait for
    and nothing to bound, and no thread is woken. :meth:`pull` returns a chunk, END (the stream's
    ``_done`` set), or EMPTY when the loop is owed a turn (the reader's ``wait()`` then yields once);
    it raises what the generator raised.
    """

    def pull(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """The reader left before the end: close the generator and free what it holds."""
        raise NotImplementedError


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Feed:
    """What a ChunkStream fed by a task of its own needs of a Job: the reader's ``cancelled``."""

    __slots__ = ("cancelled", "task")

    def __init__(self) -> None:
        self.cancelled = False
        self.task: asyncio.Task[None] | None = None

    def abandon(self) -> None:  # as Job.abandon: the reader left; the feeding task stops at its next chunk
        self.cancelled = True


def generator_stream(chunks: AsyncIterator[Any], stage: str, loop: asyncio.AbstractEventLoop) -> ChunkStream:
    """A ChunkStream fed from ``chunks`` by a task of its own (a generator postprocess, outside the slots)."""
    feed = _Feed()
    stream = ChunkStream(feed, loop)  # type: ignore[arg-type]  # it reads only .cancelled and .abandon()

    async def run() -> None:
        try:
            async for chunk in chunks:
                if feed.cancelled:
                    break
                stream.put(chunk)
        except Exception as exc:  # noqa: BLE001 - the reader gets it
            stream.put(Failure(user_error(stage, exc)))
        else:
            stream.put(END)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    feed.task = loop.create_task(run())  # kept referenced while it runs
    return stream
