"""Every crossing between threads and the event loop, in one place.

- :func:`resolve` / :func:`reject` settle a loop future (called on the loop, often through
  ``loop.call_soon_threadsafe`` from a worker thread) unless it is already settled.
- :class:`ElasticPool` runs sync pre/post hooks: a task never waits for a thread.
  ``concurrent.futures.ThreadPoolExecutor`` caps threads at ``max_workers`` (Truss's server silently
  caps sync hooks at ~40 in flight that way). Here a new thread starts whenever no idle one is
  available, and idle threads are reused, so the pool is as wide as the requests in flight.
- :func:`in_pool` makes a sync hook awaitable: it runs on the pool, its outcome settles a future.
- :func:`on_daemon_thread` runs user code that may take long (import, ``__init__``, ``load``) on a
  daemon thread of its own.
- :class:`LoopThread` is the background event loop the in-process front door runs models on.

The predict threads (``kingpost.predictor.thread_predictor``) hand results back with the same
:func:`resolve` / :func:`reject`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_STOP = object()


def resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class ElasticPool:
    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put((fn, args))

    def _work(self) -> None:
        for fn, args in iter(self._queue.get, _STOP):
            fn(*args)  # fn reports its own outcome; it never raises
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        self._threads.clear()
        self._idle = 0


def settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Callable[..., Any], *args: Any) -> None:
    """Call ``fn`` on this (non-loop) thread and settle the loop's ``future`` with what it returned or raised."""
    try:
        result = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
        outcome: Callable[[asyncio.Future[Any], Any], None] = reject
        value: Any = exc
    else:
        outcome, value = resolve, result
    try:  # not contextlib.suppress: this runs once per sync pre/post hook call, and that allocates
        loop.call_soon_threadsafe(outcome, future, value)
    except RuntimeError:  # the loop is closed: no one is waiting any more
        return


def in_pool(pool: ElasticPool, loop: asyncio.AbstractEventLoop,
            fn: Callable[[Any], Any]) -> Callable[[Any], asyncio.Future[Any]]:
    """``fn`` (one argument) run on ``pool``, as a function whose result the loop awaits."""
    submit = pool.submit

    def call(value: Any) -> asyncio.Future[Any]:
        future = loop.create_future()
        submit(settle, loop, future, fn, value)
        return future

    return call


def on_daemon_thread(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """Run user code (import, ``__init__``, ``load``) on a daemon thread of its own.

    Not the loop's default executor: its threads are joined when the loop and the interpreter
    shut down, so a server told to stop (SIGTERM) while load() downloads weights would hang until
    load() returned.
    """
    future = loop.create_future()
    threading.Thread(target=settle, args=(loop, future, fn, *args), name="kingpost-load", daemon=True).start()
    return future


class LoopThread:
    """One daemon thread running the event loop that every in-process Bundle shares."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="kingpost-loop", daemon=True).start()
                self._loop = loop
                atexit.register(self._cancel_tasks)
            return self._loop

    def _cancel_tasks(self) -> None:
        """At exit, end the loop's tasks (an async model's predict workers) while the loop still runs,
        so none is destroyed pending ("Task was destroyed but it is pending!")."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=5)

    def submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Any) -> Any:
        return self.submit(coro).result()
