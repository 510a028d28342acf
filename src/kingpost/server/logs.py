"""``--log-format json``: one JSON object per line, for access and application logs alike.

Every object has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``request_id`` and
``model``; access lines add ``route``, ``method``, ``path``, ``status``, ``duration_ms`` and
``client``. The layer :class:`RequestLog` wraps the app only in this mode: it takes the request id
from ``X-Request-Id`` (or makes one), hands it to the app (so an error body names the same id),
returns it on every response and keeps it in a context variable for application log lines written
while the request runs. As with the text access log, a request only appends to a list; lines are
formatted and written in batches off the request path.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from time import perf_counter
from typing import Any, TextIO

import orjson

from kingpost.server.accesslog import FLUSH_AFTER_S
from kingpost.server.routes import Router
from kingpost.types import Message, Receive, Scope, Send

ASGIApp = Any
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("kingpost_request_id", default=None)
"""The id of the request the current task serves, while ``--log-format json`` is on."""

_MAX_ID = 200  # a longer X-Request-Id is cut: it goes into every log line
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """A ``logging`` formatter writing one JSON object per record."""

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self.model = model

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso(record.created), "level": record.levelname, "logger": record.name,
            "message": record.getMessage(), "request_id": request_id.get(), "model": self.model,
        }
        for key, value in vars(record).items():  # fields given with extra={...}
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def use_json(model: str | None) -> None:
    """Make every handler of the root logger write JSON (adding a stderr handler if it has none)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter(model))


def announce(message: str, model: str | None) -> None:
    """Write one INFO line on stderr whatever the log level (the server's "serving ... on" line)."""
    record = logging.LogRecord("kingpost.server", logging.INFO, __file__, 0, message, (), None)
    print(JsonFormatter(model).format(record), file=sys.stderr, flush=True)


class RequestLog:
    """Request ids on every answer, and a JSON access line per request when ``access`` is on."""

    def __init__(self, app: ASGIApp, router: Router, model: str | None, *, access: bool = True,
                 stream: TextIO | None = None) -> None:
        self.app = app
        self.router = router
        self.model = model
        self.access = access
        self._stream = stream
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{int(time.time()):x}-"
        self._pending: list[tuple[Scope, int, float, float, str]] = []
        # (method, path) -> (route name, model name), for the lines
        self._routes: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self._second, self._stamp = -1, ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, self._flushing(send) if scope["type"] == "lifespan" else send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value[:_MAX_ID]
        if not rid:
            rid = (self._prefix + str(next(self._ids))).encode()
            scope = {**scope, "headers": [*scope["headers"], (b"x-request-id", rid)]}
        text = rid.decode("latin-1")
        token = request_id.set(text)
        status = 499  # nothing sent: the client went away first
        header = (b"x-request-id", rid)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        start = perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
            if self.access and scope["type"] == "http":
                self._add(scope, status, perf_counter() - start, text)

    def _flushing(self, send: Send) -> Send:
        async def send_after_flush(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                self.flush()
            await send(message)
        return send_after_flush

    def _add(self, scope: Scope, status: int, seconds: float, rid: str) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self.flush)
        self._pending.append((scope, status, seconds, time.time(), rid))

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        lines = []
        routes = self._routes
        for scope, status, seconds, at, rid in pending:
            method, path = scope["method"], scope["path"]
            seen = routes.get((method, path))
            if seen is None:
                match = self.router.match(path, method)
                seen = (match.route.name if match.route is not None else None,
                        self.model or match.params.get("model"))  # several models: the one the path names
                if len(routes) < 1024:
                    routes[method, path] = seen
            name, model = seen
            client = scope.get("client")
            second = int(at)
            if second != self._second:
                self._second, self._stamp = second, _iso(second)[:-5]  # "...T12:34:56"
            lines.append(orjson.dumps({
                "time": f"{self._stamp}.{int((at - second) * 1000):03d}Z", "level": "INFO",
                "logger": "kingpost.access",
                "message": f"{method} {path} {status}", "request_id": rid, "model": model,
                "route": name, "method": method, "path": path,
                "status": status, "duration_ms": round(seconds * 1000, 3),
                "client": f"{client[0]}:{client[1]}" if client else None,
            }).decode() + "\n")  # orjson: a third of json.dumps's time, the bulk of this layer's cost
        stream = self._stream or sys.stderr
        stream.write("".join(lines))
        stream.flush()
