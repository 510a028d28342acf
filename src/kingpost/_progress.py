"""Progress of long CLI work (environment builds, build contexts, deployments) on stderr.

On a terminal, a live line (``rich``, imported only then) shows the current step and how long it
has run; steps that finished stay printed above it. Anywhere else (a pipe, a CI log, a file), or
without ``rich``, every message is one plain line, exactly as the library sent it.

The library reports through an ``echo(message)`` callable; this module is what the CLI hands it.
Messages indented under ``kingpost:`` (installer output, heartbeats, an image build's steps) only
move the live line; if the work fails, the last of them are printed, so the cause stays on screen.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections import deque
from types import TracebackType
from typing import IO, Any

_DETAIL = "kingpost:   "
TAIL = 20  # detail lines printed when the work fails


def _live_possible(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb" \
        and importlib.util.find_spec("rich") is not None


class Progress:
    """``with Progress() as echo: long_work(echo=echo)``."""

    def __init__(self, stream: IO[str] | None = None, *, live: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = _live_possible(self.stream) if live is None else live
        self._status: Any = None
        self._console: Any = None
        self._step = ""
        self._started = time.monotonic()
        self._details: deque[str] = deque(maxlen=TAIL)

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console

            try:  # the stream's own terminal (rich would ask stdin/stdout/stderr)
                width: int | None = os.get_terminal_size(self.stream.fileno()).columns
            except (OSError, ValueError, AttributeError):
                width = None
            self._console = Console(file=self.stream, stderr=self.stream is sys.stderr, highlight=False, width=width)
            self._status = self._console.status("", spinner="dots")
            self._status.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
            if exc is not None and self._details:
                self._console.print("\n".join(_escape(d) for d in self._details), soft_wrap=True)

    def __call__(self, message: str) -> None:
        if self._status is None:
            print(message, file=self.stream, flush=True)
            return
        if message.startswith(_DETAIL):
            self._details.append(message)
            detail = message[len(_DETAIL):].strip()
            self._status.update(f"{self._step} [dim]{_escape(detail)}[/] ({self._elapsed()})")
            return
        self._console.print(_escape(message), soft_wrap=True)
        self._step = _escape(message.removeprefix("kingpost: ").rstrip("."))
        self._started = time.monotonic()
        self._status.update(f"{self._step} ({self._elapsed()})")

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:.0f} s"


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
