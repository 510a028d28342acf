"""The access log: one line per predict request, written in batches.

A ``logging`` call per request (a LogRecord, a caller lookup, a timestamp format, a locked write)
cost more CPU than serving an echo request. Here a request only appends its scope, status and
duration; at most ``FLUSH_AFTER_S`` later the batch is formatted, with one timestamp, and written
in one call. The server flushes what is left when it stops.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

FLUSH_AFTER_S = 0.01
"""Lines wait at most this long: a quiet server then writes one batch per 10 ms instead of a write
per request (~10 us each: a third of the CPU a request costs at one connection)."""


class AccessLog:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._pending: list[tuple[dict[str, Any], int, float]] = []
        self._second = -1
        self._stamp = ""

    def add(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self.flush)
        self._pending.append((scope, status, seconds))

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        now = int(time.time())
        if now != self._second:  # up to 100 flushes a second: format the time once a second
            self._second, self._stamp = now, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        stamp = self._stamp
        lines = [f'{stamp} {_client(scope)} "{scope["method"]} {_safe(scope["path"])}" {status} '
                 f'{seconds * 1000:.1f}ms\n' for scope, status, seconds in pending]
        stream = self._stream or sys.stderr
        stream.write("".join(lines))
        stream.flush()


def _safe(text: str) -> str:
    """``text`` with control characters and quotes escaped: a path cannot forge a line or a field."""
    if text.isprintable() and '"' not in text:
        return text
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def _client(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
