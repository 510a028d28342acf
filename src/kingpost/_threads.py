"""An elastic thread pool for sync pre/post hooks: a task never waits for a thread.

``concurrent.futures.ThreadPoolExecutor`` caps threads at ``max_workers`` (Truss's server silently
caps sync hooks at ~40 in flight that way). Here a new thread starts whenever no idle one is
available, and idle threads are reused, so the pool is as wide as the requests in flight.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


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
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                return
            fn, args = item
            fn(*args)  # fn reports its own outcome; it never raises
            with self._lock:
                self._idle += 1

    @property
    def size(self) -> int:
        return len(self._threads)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        self._threads.clear()
        self._idle = 0
