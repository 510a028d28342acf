"""The access log: one line per predict request, written in batches.

A ``logging`` call per request (a LogRecord, a caller lookup, a timestamp format, a locked write)
cost more CPU than serving an echo request. Lines here are formatted with a timestamp cached per
second and written once per turn of the event loop: at once when the server is quiet, and many
lines in one write when it is busy.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO


class AccessLog:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""

    def add(self, client: str, method: str, path: str, status: int, seconds: float) -> None:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        if not self._lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self._lines.append(f'{self._stamp} {client} "{method} {path}" {status} {seconds * 1000:.1f}ms\n')

    def flush(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            stream = self._stream or sys.stderr
            stream.write("".join(lines))
            stream.flush()
