"""Download progress: a one-line bar the CLI installs when stderr is a terminal, and nothing otherwise.

The library only calls the installed reporter; the CLI decides whether there is one (a log file
or a pipe gets the summary line the fetcher logs, not a bar redrawn ten times a second).
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

from kingpost.weights.download import Progress

_installed: Progress | None = None


def install(reporter: Progress | None) -> None:
    global _installed
    _installed = reporter


def weights_progress() -> Progress | None:
    return _installed


class Bar:
    """All downloads in flight as one line: files, bytes so far of the total known, rate."""

    def __init__(self, stream: TextIO, interval: float = 0.1) -> None:
        self._stream = stream
        self._interval = interval
        self._lock = threading.Lock()
        self._files: dict[str, tuple[int, int | None]] = {}
        self._last = 0.0
        self._start = time.monotonic()

    def __call__(self, label: str, done: int, total: int | None) -> None:
        with self._lock:
            self._files[label] = (done, total)
            now = time.monotonic()
            finished = total is not None and done >= total
            if now - self._last < self._interval and not finished:
                return
            self._last = now
            got = sum(d for d, _ in self._files.values())
            whole = sum(t or d for d, t in self._files.values())
            rate = got / max(now - self._start, 1e-3) / 1e6
            pct = 100 * got / whole if whole else 100.0
            width = 24
            fill = int(width * pct / 100)
            self._stream.write(f"\rfetching {len(self._files)} file(s) [{'#' * fill}{'.' * (width - fill)}] "
                               f"{pct:5.1f}% {got / 1e6:.1f}/{whole / 1e6:.1f} MB {rate:.1f} MB/s")
            if finished and got >= whole:
                self._stream.write("\n")
            self._stream.flush()
