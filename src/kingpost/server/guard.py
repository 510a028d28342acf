"""uvicorn's httptools protocol with the guards a production server needs (``runtime.limits``).

- The request head (request line and headers) is fed to the parser only up to
  ``max_header_bytes`` and may hold ``max_headers`` lines: beyond either, 431 and close. The
  parser is never handed an unbounded head (its work on one grows with the square of its size).
- Every connection has a deadline for its current phase: ``head_timeout_s`` from its opening or
  from a request's first byte to the last header, ``body_timeout_s`` to the body's last byte,
  ``idle_timeout_s`` between keep-alive requests; ``write_timeout_s`` while a client reads nothing
  of what it is sent. One sweep per server checks them all a few times a second (no timer per
  request: a request only stores a float computed from the sweep's clock).
- At ``max_connections`` a new connection closes the one that has been idle longest (a silent
  connection counts as idle), or is refused with 503 when none is idle.
- ``Expect: 100-continue`` with a Content-Length above ``runtime.max_request_bytes`` is refused with
  413 before the client sends its body; parse errors are answered as JSON.
- When a client goes away before its answer is complete, the request's task is cancelled (for the
  routes the app names): a request queued for predict leaves the queue at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import resource
from collections import OrderedDict
from collections.abc import Callable
from math import inf
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from kingpost.codecs import encode_json
from kingpost.limits import Limits
from kingpost.types import Scope

logger = logging.getLogger("kingpost.server")

_IDLE, _HEAD, _BODY, _APP = 0, 1, 2, 3
_FD_RESERVE = 64  # descriptors kept for the model, logs and the listening socket


class _Refused(Exception):
    pass


class Guards:
    """One server's guard settings and shared state (its clock, its idle connections, its sweep)."""

    def __init__(self, limits: Limits, max_body: int, cancellable: Callable[[Scope], bool]) -> None:
        self.max_head = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.head_timeout = limits.head_timeout_s
        self.body_timeout = limits.body_timeout_s
        self.idle_timeout = limits.idle_timeout_s
        self.write_timeout = limits.write_timeout_s
        self.max_body = max_body
        self.max_connections = _fit_to_descriptors(limits.max_connections)
        self.cancellable = cancellable
        self.tick = max(0.05, min(1.0, self.head_timeout / 4, self.body_timeout / 4, self.idle_timeout / 4,
                                  self.write_timeout / 4))
        self.clock = 0.0
        self.idle: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self._connections: set[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        self._loop, self._connections = loop, connections
        self.clock = loop.time()
        loop.call_later(self.tick, self._sweep)

    def _sweep(self) -> None:
        assert self._loop is not None and self._connections is not None
        now = self.clock = self._loop.time()
        for conn in list(self._connections):
            if type(conn).__dict__.get("guards") is not self:  # a websocket, handed over after its upgrade
                continue
            if conn._deadline < now:
                conn._expire()
            elif conn._write_deadline < now:
                logger.warning("%s read nothing of its answer for %g s (runtime.limits.write_timeout_s); "
                               "disconnected", _peer(conn.client), self.write_timeout)
                conn.transport.abort()
        self._loop.call_later(self.tick, self._sweep)


class GuardedProtocol(HttpToolsProtocol):
    guards: ClassVar[Guards]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state = _IDLE
        self._deadline = inf
        self._write_deadline = inf
        self._in_head = True
        self._head_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._refusal: tuple[int, str] | None = None

    # -- connections ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        g = self.guards
        if g._loop is None:
            g.start(self.loop, self.connections)
        super().connection_made(transport)
        if len(self.connections) > g.max_connections:
            if not g.idle:
                logger.warning("%d connections are open and none is idle (runtime.limits.max_connections); "
                               "refused one", len(self.connections) - 1)
                self._refuse(503, f"the server holds its limit of {g.max_connections} connections; retry shortly.")
                return
            victim, _ = g.idle.popitem(last=False)
            victim.transport.close()
        self._deadline = g.clock + g.head_timeout  # a new connection must send its request soon
        g.idle[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guards.idle.pop(self, None)
        self._deadline = self._write_deadline = inf
        cycle, task = self.cycle, self._task
        super().connection_lost(exc)
        if (task is not None and cycle is not None and not cycle.response_complete and not task.done()
                and self.guards.cancellable(cycle.scope)):  # type: ignore[arg-type]
            task.cancel()  # the client left: its request stops here, wherever it waits

    def pause_writing(self) -> None:
        self._write_deadline = self.guards.clock + self.guards.write_timeout
        super().pause_writing()

    def resume_writing(self) -> None:
        self._write_deadline = inf
        super().resume_writing()

    def _expire(self) -> None:
        state, g = self._state, self.guards
        self._deadline = inf
        if state == _IDLE:
            self.transport.close()  # an idle keep-alive connection, or one that never sent a byte
        elif state == _HEAD:
            self._refuse(408, f"the request head did not arrive within {g.head_timeout:g} s "
                              "(runtime.limits.head_timeout_s).")
        elif state == _BODY and not (self.cycle is not None and self.cycle.response_started):
            self._refuse(408, f"the request body did not arrive within {g.body_timeout:g} s "
                              "(runtime.limits.body_timeout_s).")
        else:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        body = encode_json({"error": message})
        self.transport.write(b"".join((STATUS_LINE[status], b"content-type: application/json\r\ncontent-length: ",
                                       str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body)))
        self.transport.close()

    # -- bytes in ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._state == _IDLE:  # a request's first byte: from now on the head's deadline
            self._state = _HEAD
            self.guards.idle.pop(self, None)
            self._deadline = min(self._deadline, self.guards.clock + self.guards.head_timeout)
        if self._in_head:
            size = self._head_bytes + len(data)
            limit = self.guards.max_head
            if size > limit:
                room = limit - self._head_bytes
                self._head_bytes = limit
                if not self._feed(data[:room]):
                    return
                if self._in_head:
                    self._refuse(431, f"the request head is larger than {limit} bytes "
                                      "(runtime.limits.max_header_bytes).")
                    return
                data = data[room:]
            else:
                self._head_bytes = size
        try:  # _feed, written out: every request comes through here
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade()
        except httptools.HttpParserError as exc:
            self._parse_error(exc)

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade()
        except httptools.HttpParserError as exc:
            self._parse_error(exc)
            return False
        return True

    def _upgrade(self) -> None:
        if self._should_upgrade():
            self.handle_websocket_upgrade()
        else:
            self._unsupported_upgrade_warning()

    def _parse_error(self, exc: Exception) -> None:
        if self._refusal is not None:
            self._refuse(*self._refusal)
        else:
            reason = str(exc).strip().rstrip(".") or "it cannot be parsed"
            self._refuse(400, f"the request is not valid HTTP/1.1: {reason}.")

    # -- parser callbacks ----------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        g = self.guards
        if len(self.headers) > g.max_headers:
            self._refusal = (431, f"the request has more than {g.max_headers} headers "
                                  "(runtime.limits.max_headers).")
            raise _Refused
        if self.expect_100_continue:
            for name, value in self.headers:
                if name == b"content-length" and value.isdigit() and int(value) > g.max_body:
                    self._refusal = (413, f"the request body is {int(value)} bytes; "
                                          f"runtime.max_request_bytes allows {g.max_body}.")
                    raise _Refused
        self._in_head = False
        self._state = _BODY
        self._deadline = g.clock + g.body_timeout
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._state == _BODY:
            if self.cycle is not None and self.cycle.response_complete:
                self._idle()  # answered before its body ended (a 413, say): nothing is in progress now
            else:
                self._state = _APP
                self._deadline = inf
        super().on_message_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if self.config.reset_contextvars:
            task = self.loop.create_task(cycle.run_asgi(app),
                                         context=contextvars.Context())  # type: ignore[call-arg]
        else:
            task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        self._task = task

    def on_response_complete(self) -> None:
        # uvicorn's, less its keep-alive timer per request: the sweep enforces idle_timeout_s.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._state == _APP:
            self._idle()

    def _idle(self) -> None:
        self._state = _IDLE
        g = self.guards
        self._deadline = g.clock + g.idle_timeout
        g.idle[self] = None


def protocol_class(limits: Limits, max_body: int, cancellable: Callable[[Scope], bool]) -> type[asyncio.Protocol]:
    """A protocol class for one server (``uvicorn.Config(http=...)``), its guards built once here."""
    return type("KingpostHttpProtocol", (GuardedProtocol,), {"guards": Guards(limits, max_body, cancellable)})


def raise_descriptor_limit() -> int:
    """Raise this process's open-file limit to its hard limit (as Go and nginx do); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _fit_to_descriptors(wanted: int) -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or wanted <= soft - _FD_RESERVE:
        return wanted
    fitted = max(1, soft - _FD_RESERVE)
    logger.warning("runtime.limits.max_connections is %d but this process may open %d files; "
                   "holding at most %d connections", wanted, soft, fitted)
    return fitted


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


__all__ = ["GuardedProtocol", "Guards", "protocol_class", "raise_descriptor_limit"]
