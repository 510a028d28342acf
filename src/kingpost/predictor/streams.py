"""The output of a streaming predict, as the runtime hands it to every front door."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from kingpost.concurrency import resolve
from kingpost.errors import user_error

if TYPE_CHECKING:
    from kingpost.predictor.jobs import Job

END = object()
"""Put into a stream after its last chunk."""


class Failure:
    """Put into a stream when the generator raised: the reader raises ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ChunkStream:
    """The output of a streaming predict, read with ``async for``; ``aclose()`` abandons it.

    At most ``room`` chunks wait for the reader (0: no bound): past that, the producer waits in
    :meth:`wait_room` (a predict thread) or :meth:`put_async` (an async generator), so a client
    that reads slowly slows the generator instead of filling memory.
    """

    def __init__(self, job: Job, room: int = 0) -> None:
        self._job = job
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._done = False
        self._room = threading.Semaphore(room) if room else None
        self._cap = room
        self._space: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:  # called on the loop
        self._queue.put_nowait(item)

    def wait_room(self) -> None:
        """On a predict thread: wait until fewer than ``room`` chunks are unread (or the reader left)."""
        room = self._room
        if room is not None:
            while not room.acquire(timeout=1.0):
                if self._job.cancelled:
                    return

    async def put_async(self, item: Any) -> None:
        """On the loop: put ``item``, first waiting while ``room`` chunks are unread."""
        while self._cap and self._queue.qsize() >= self._cap and not self._job.cancelled:
            self._space = asyncio.get_running_loop().create_future()
            await self._space
        self._queue.put_nowait(item)

    def _made_room(self) -> None:
        if self._room is not None:
            self._room.release()
        space = self._space
        if space is not None:
            self._space = None
            resolve(space, None)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        self._made_room()
        if item is END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, Failure):
            self._done = True
            raise item.error
        return item

    async def aclose(self) -> None:
        if not self._done:  # abandoned before its end: stop the generator (an async one at once)
            self._job.abandon()
        self._done = True
        self._job.cancelled = True
        self._made_room()  # a producer waiting for room wakes, sees the reader gone and stops


class _Feed:
    """What a ChunkStream fed by a task of its own needs of a Job: the reader's ``cancelled``."""

    __slots__ = ("cancelled", "task")

    def __init__(self) -> None:
        self.cancelled = False
        self.task: asyncio.Task[None] | None = None


def generator_stream(chunks: AsyncIterator[Any], stage: str, loop: asyncio.AbstractEventLoop) -> ChunkStream:
    """A ChunkStream fed from ``chunks`` by a task of its own (a generator postprocess, outside the slots)."""
    feed = _Feed()
    stream = ChunkStream(feed)  # type: ignore[arg-type]  # it reads only .cancelled

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
