"""The front door of a ``docker_server`` bundle: Truss's paths in front of the bundle's own server.

| path | answer |
|---|---|
| GET /                         | liveness: the child's liveness_endpoint once it is up; 503 once it exited |
| GET /v1/models/<name>         | readiness: 503 while fetching and starting, then the child's readiness_endpoint |
| POST /v1/models/<name>:predict| forwarded to the child's predict_endpoint, streamed back as it comes |
| GET /metrics                  | Prometheus text (kingpost's, not the child's) |
| anything else                 | forwarded to the same path (OpenAI-style /v1/chat/completions, ...) |

kingpost's body limit (``runtime.max_request_bytes``, 413), request timeout
(``runtime.request_timeout_s``, 504 when the child has not begun to answer in time), metrics and
access log apply to every forwarded request. The child is reached over HTTP/1.1 on 127.0.0.1 with
kept-alive connections (``h11``, which uvicorn already brings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h11

from kingpost import codecs
from kingpost.concurrency import on_daemon_thread
from kingpost.config import Config
from kingpost.custom_server import DockerServer
from kingpost.errors import KingpostError
from kingpost.server.accesslog import AccessLog
from kingpost.server.child import Child
from kingpost.server.metrics import ServerMetrics
from kingpost.server.routes import Route, Router
from kingpost.stats import RuntimeStats
from kingpost.types import Params, Receive, Scope, Send

logger = logging.getLogger("kingpost.server")

_JSON = b"application/json"
_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
                  b"upgrade", b"host", b"content-length", b"proxy-authenticate", b"proxy-authorization"})
_READY_POLL_S = 0.25


class _Unavailable(Exception):
    """The child cannot take the request: the sentence says why."""


class Upstream:
    """HTTP/1.1 to 127.0.0.1:<port>, kept-alive connections reused."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]] = []

    async def request(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], AsyncIterator[bytes]]:
        """Send one request; returns (status, headers, body chunks) as soon as the head arrives."""
        out = [(b"host", f"127.0.0.1:{self.port}".encode()), *headers, (b"content-length", str(len(body)).encode())]
        while True:
            reader, writer, conn, reused = await self._connection()
            try:
                data = conn.send(h11.Request(method=method, target=target, headers=out)) or b""
                data += (conn.send(h11.Data(data=body)) or b"") if body else b""
                data += conn.send(h11.EndOfMessage()) or b""
                writer.write(data)
                await writer.drain()
                event = await _next_event(reader, conn)
                while isinstance(event, h11.InformationalResponse):
                    event = await _next_event(reader, conn)
                if not isinstance(event, h11.Response):
                    raise h11.RemoteProtocolError("the connection closed before a response")
            except (OSError, h11.ProtocolError):
                writer.close()
                if reused:  # a kept-alive connection the child had closed meanwhile: once more, fresh
                    continue
                raise
            except BaseException:  # cancelled (request_timeout_s, the client left): the connection is spent
                writer.close()
                raise
            break
        head = [(k, v) for k, v in event.headers if k not in _HOP]
        length = next((v for k, v in event.headers if k == b"content-length"), None)
        if length is not None:
            head.append((b"content-length", length))
        return event.status_code, head, self._body(reader, writer, conn)

    async def _body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    conn: h11.Connection) -> AsyncIterator[bytes]:
        finished = False
        try:
            while True:
                event = await _next_event(reader, conn)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    finished = True
                    return
        finally:
            if finished and conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                self._idle.append((reader, writer, conn))
            else:  # abandoned half-way (the client left): this connection cannot be reused
                writer.close()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection, bool]:
        while self._idle:
            reader, writer, conn = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer, conn, True
            writer.close()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            raise _Unavailable(f"the custom server does not answer on port {self.port} "
                               f"({exc.strerror or exc}).") from exc
        return reader, writer, h11.Connection(h11.CLIENT), False

    def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


async def _next_event(reader: asyncio.StreamReader, conn: h11.Connection) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(65536))


class ProxyApp:
    """Serve a docker_server bundle: fetch its weights, start its command, stand in front of it."""

    def __init__(self, root: Path, config: Config, spec: DockerServer, *, access_log: bool = True,
                 grace_period: float = 30.0, secrets_dir: str | Path | None = None) -> None:
        self.root = root
        self.config = config
        self.spec = spec
        self.grace_period = grace_period
        self.secrets_dir = secrets_dir
        self.name = config.model_name or root.resolve().name
        self.child = Child(root, spec)
        self.upstream = Upstream(spec.server_port)
        self.metrics = ServerMetrics(RuntimeStats())
        self.access_log = AccessLog() if access_log else None
        self.max_bytes = config.runtime.max_request_bytes
        self.timeout = config.runtime.request_timeout_s
        self.ready = False
        self.phase = "starting"
        self.failure: str | None = None
        self.start_task: asyncio.Task[None] | None = None
        self.router = Router(self.routes())

    def routes(self) -> list[Route]:
        """The route table of a docker_server bundle (a model.py bundle has ``App.routes``)."""
        return [
            Route("/", self._liveness, ("GET",), "liveness"),
            Route("/metrics", self._metrics, ("GET",), "metrics"),
            Route("/v1/models/{model}", self._readiness, ("GET",), "readiness"),
            Route("/v1/models/{model}:predict", self._predict, ("POST",), "predict"),
            Route("/{path:path}", self._forward, ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"), "proxy"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        match = self.router.match(scope["path"], scope["method"])
        if match.route is None:
            await _respond(send, 405 if match.allowed else 404,
                           codecs.encode_json({"error": f"no route for {scope['method']} {scope['path']}."}))
            return
        await match.route.endpoint(scope, receive, send, match.params)

    # -- start and stop ------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_task = asyncio.get_running_loop().create_task(self._start())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.start_task is not None:
                    self.start_task.cancel()
                await self.child.stop(self.grace_period)
                self.upstream.close()
                if self.access_log is not None:
                    self.access_log.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        from kingpost.weights import Fetcher
        from kingpost.weights.progress import weights_progress

        try:
            fetcher = Fetcher(self.root, self.config, secrets_dir=self.secrets_dir)
            if fetcher.sources:
                self.phase = "fetching weights"
                # a daemon thread: SIGTERM mid-download must not wait for the download (to_thread's would)
                await on_daemon_thread(asyncio.get_running_loop(), lambda: fetcher.run(progress=weights_progress()))
            self.phase = f"starting; waiting for {self.spec.readiness_endpoint} on port {self.spec.server_port}"
            await self.child.start()
        except (KingpostError, OSError) as exc:
            self.failure = str(exc)
            logger.error("the custom server could not be started: %s", exc)
            return
        while self.child.running:
            with contextlib.suppress(_Unavailable, OSError, h11.ProtocolError):
                status, _, body = await self.upstream.request("GET", self.spec.readiness_endpoint.encode(), [], b"")
                async for _ in body:
                    pass
                if status == 200:
                    self.ready = True
                    logger.warning("the custom server is ready on port %d", self.spec.server_port)
                    return
            await asyncio.sleep(_READY_POLL_S)

    def _unavailable(self) -> str | None:
        if self.failure is not None:
            return f"the custom server could not be started: {self.failure}"
        if self.child.exit_reason is not None:
            return f"the custom server (docker_server.start_command) {self.child.exit_reason}."
        if not self.ready:
            return f"the custom server is {self.phase}."
        return None

    # -- endpoints -----------------------------------------------------------------------------

    async def _liveness(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        if self.child.exit_reason is not None or self.failure is not None:
            await _respond(send, 503, codecs.encode_json({"error": self._unavailable()}))
        elif not self.ready:  # alive while it starts; a startup probe waits on readiness
            await _respond(send, 200, b'{"status":"ok"}')
        else:
            await self._relay(scope, receive, send, "liveness", self.spec.liveness_endpoint.encode())

    async def _readiness(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await self._relay(scope, receive, send, "readiness", self.spec.readiness_endpoint.encode())

    async def _predict(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await self._relay(scope, receive, send, "predict", self._target(self.spec.predict_endpoint, scope))

    async def _forward(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await self._relay(scope, receive, send, "proxy", self._target(scope["path"], scope))

    async def _metrics(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await _respond(send, 200, self.metrics.render(waiting=0), b"text/plain; version=0.0.4; charset=utf-8")

    @staticmethod
    def _target(path: str, scope: Scope) -> bytes:
        query: bytes = scope.get("query_string", b"")
        return path.encode() + (b"?" + query if query else b"")

    async def _relay(self, scope: Scope, receive: Receive, send: Send, route: str, target: bytes) -> None:
        start = time.perf_counter()
        status = 502
        try:
            status = await self._relay_once(scope, receive, send, target)
        finally:
            elapsed = time.perf_counter() - start
            if route == "predict":
                self.metrics.answer(status, elapsed)
            else:
                self.metrics.responses[route, status] += 1
            if self.access_log is not None and route in ("predict", "proxy"):
                self.access_log.add(scope, status, elapsed)

    async def _relay_once(self, scope: Scope, receive: Receive, send: Send, target: bytes) -> int:
        reason = self._unavailable()
        if reason is not None:
            await _respond(send, 503, codecs.encode_json({"error": reason}), extra=[(b"retry-after", b"1")])
            return 503
        body = await self._read_body(receive, scope)
        if body is None:
            too_large = f"the request body is larger than runtime.max_request_bytes ({self.max_bytes} bytes)."
            await _respond(send, 413, codecs.encode_json({"error": too_large}))
            return 413
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP]
        try:
            status, head, chunks = await asyncio.wait_for(
                self.upstream.request(scope["method"], target, headers, body), self.timeout)
        except asyncio.TimeoutError:
            await _respond(send, 504, codecs.encode_json(
                {"error": f"the custom server did not answer within runtime.request_timeout_s ({self.timeout:g} s)."}))
            return 504
        except (_Unavailable, OSError, h11.ProtocolError) as exc:
            reason = self._unavailable() or (str(exc) if isinstance(exc, _Unavailable)
                                             else f"the custom server broke the connection ({exc}).")
            await _respond(send, 502, codecs.encode_json({"error": reason}))
            return 502
        await send({"type": "http.response.start", "status": status, "headers": head})
        gone = asyncio.get_running_loop().create_task(_disconnected(receive))
        try:
            async for chunk in chunks:
                if gone.done():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (OSError, h11.ProtocolError) as exc:
            logger.error("the custom server broke off a response to %s: %s", target.decode(errors="replace"), exc)
        finally:
            gone.cancel()
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return status

    async def _read_body(self, receive: Receive, scope: Scope) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            parts.append(chunk)
            if not message.get("more_body"):
                return b"".join(parts)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = _JSON,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
