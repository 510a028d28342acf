"""The ASGI application: Truss's paths on a bare ASGI callable, no framework on the hot path.

| path | answer |
|---|---|
| GET /                                   | liveness: 200 while the process is up |
| GET /v1/models/<name>                   | readiness: 200 ready, 503 loading or unhealthy, 500 load failed |
| POST /v1/models/<name>:predict[_binary] | JSON or msgpack in and out; a streaming predict answers chunked or SSE |
| GET /metrics                            | Prometheus text |
| GET /openapi.json, /docs                | the API described |
| GET / (browsers), /playground           | the playground page (``server/playground.py``) |
| /v2/...                                 | the Open Inference Protocol (``server/v2.py``) |
| /v1/chat/completions, /v1/websocket, /ping | Truss's model surface (``surface.py``, ``openai.py``, ``websocket.py``) |
| /v1/models/<name>:async_predict, /v1/jobs/... | durable async jobs (``server/jobs.py``; one bundle per server) |

With several bundles (``models``), ``<name>`` picks the model; with one, any name reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from kingpost import codecs
from kingpost.errors import (
    ClientGone,
    DeadlineExceeded,
    InputError,
    KingpostError,
    ModelLoadError,
    NotReadyError,
    PayloadTooLargeError,
    RequestError,
    UnsupportedMediaType,
)
from kingpost.predictor.streams import EMPTY, END, ChunkStream
from kingpost.runtime import Runtime
from kingpost.server import heap, openai, openapi
from kingpost.server.accesslog import AccessLog
from kingpost.server.auth import ApiKeys
from kingpost.server.bodies import BodyDecoder
from kingpost.server.http import METHOD_NOT_ALLOWED, NOT_FOUND, error_answer, status_of
from kingpost.server.http import SHUTTING_DOWN as _SHUTTING_DOWN
from kingpost.server.http import header as _header
from kingpost.server.http import respond as _respond
from kingpost.server.jobs import JobRoutes, openapi_paths
from kingpost.server.metrics import ServerMetrics
from kingpost.server.models import Models
from kingpost.server.playground import Playground
from kingpost.server.redact import Redactor
from kingpost.server.responses import send_returned
from kingpost.server.routes import Route, Router
from kingpost.server.surface import SurfaceRoutes
from kingpost.server.v2 import V2, v2_openapi
from kingpost.server.watchdog import PredictWatchdog
from kingpost.server.websocket import WebsocketRoute
from kingpost.stats import RuntimeStats
from kingpost.types import Headers, Message, Params, Receive, Scope, Send, State

if TYPE_CHECKING:
    from kingpost.jobs.service import JobService
    from kingpost.server.reload import Reloader

logger = logging.getLogger("kingpost.server")

_JSON = b"application/json"
_MSGPACK = b"application/msgpack"
_OCTET = b"application/octet-stream"
_OK = b'{"status":"ok"}'
_HEALTH = frozenset({"liveness", "readiness"})  # answer any Host: an orchestrator's probe names the pod


class StreamCut(BaseException):
    """A stream stalled past runtime.streaming_read_timeout: raised to the server, which closes the
    connection without the final chunk (a BaseException, so no handler answers it as an error)."""


class App:
    """Serve one runtime, or several by name. Models load in the background once the server starts (lifespan)."""

    def __init__(self, runtime: Runtime, *, debug: bool = False, access_log: bool = True,
                 load_before_serving: bool = False, on_uvicorn: bool = False,
                 on_load_failure: Callable[[ModelLoadError], None] | None = None,
                 models: Models | None = None, jobs: JobService | None = None,
                 allowed_hosts: frozenset[bytes] | None = None, on_stuck: Callable[[], None] | None = None,
                 api_keys: ApiKeys | None = None, metrics_public: bool = False) -> None:
        """Serve ``runtime``; with ``models``, serve each of them under its name (``runtime`` is the first).

        ``on_uvicorn`` says the app runs on uvicorn (``kingpost serve``): a client's disconnect is
        then read from uvicorn's request cycle instead of a watcher task per request. Other hosts
        (Ray Serve's proxy) get the portable watcher. ``jobs`` turns the async-job routes on (see
        :mod:`kingpost.server.jobs`); it starts and stops with the app. ``allowed_hosts`` are the Host
        header values accepted (None: any); ``on_stuck`` is called once predict has made no progress
        for ``runtime.limits.predict_stuck_s``. The limits are the first (or only) model's.

        With ``api_keys``, every route not marked ``public`` asks for a key (see
        :mod:`kingpost.server.auth`); ``/metrics`` is public only with ``metrics_public``.
        """
        self.runtime = runtime
        self.debug = debug
        self.access_log = AccessLog() if access_log else None
        self._uvicorn = on_uvicorn
        self.load_before_serving = load_before_serving
        self.on_load_failure = on_load_failure
        self.api_keys = api_keys
        self.metrics_public = metrics_public
        self.metrics = ServerMetrics(runtime.stats)
        self.models = models
        self.max_bytes = runtime.config.runtime.max_request_bytes if models is None else max(
            r.config.runtime.max_request_bytes for r in models.runtimes.values())
        self.limits = runtime.config.runtime.limits
        self.decoder = BodyDecoder(self.limits)
        self._decode_in_thread = self.limits.decode_in_thread_bytes
        self._hosts = allowed_hosts
        stuck_s = self.limits.predict_stuck_s
        self.watchdog = None if stuck_s is None else PredictWatchdog(self._all_stats, stuck_s, on_stuck)
        self.redact = Redactor(_secret_values([runtime] if models is None else models.runtimes.values()))
        self.load_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():x}-"
        # Full request paths already routed to predict, and the runtime each reaches.
        self._predict_paths: dict[str, Runtime] = {}
        self._keyed_predict_paths: dict[str, Runtime] = {}  # the same, when API keys are configured
        if models is not None:
            models.on_unload.append(self._forget)
        self._answered = self.metrics.answered
        self.jobs = jobs
        spec = self._describe()
        self.reload_error: str | None = None  # why the last reload failed (serve --reload), shown to users
        self.reloader: Reloader | None = None  # set by `kingpost serve --reload`
        self.playground = Playground(self, spec)
        self.v2 = V2(self)
        self.surface = SurfaceRoutes(self)
        self._jobs = JobRoutes(self, jobs)
        if jobs is not None:  # decided once: only a server with jobs looks for Prefer: respond-async
            self._predict = self._jobs.wrap_predict(self._predict)  # type: ignore[method-assign,assignment]

        self.router = Router(self.routes())
        if runtime.state is State.READY:  # loaded before the app was made (a Ray Serve replica)
            self._adopt()

    def routes(self) -> list[Route]:
        """The route table. A route family (OpenAI-style, V2, jobs, ...) adds its lines here."""
        return [
            Route("/", self._root, ("GET",), "liveness", public=True),
            Route("/health", self._liveness, ("GET",), "liveness", public=True),
            Route("/metrics", self._metrics, ("GET",), "metrics", public=self.metrics_public),
            Route("/openapi.json", self._openapi_json, ("GET",), "openapi"),
            Route("/v1/models/{model}", self._readiness, ("GET",), "readiness", public=True),
            Route("/v1/models/{model}:predict", self._predict_route, ("POST",), "predict"),
            Route("/v1/models/{model}:predict_binary", self._predict_route, ("POST",), "predict"),
            *self.playground.routes(),
            Route("/v2", self.v2.server_metadata, ("GET",), "v2_metadata"),
            Route("/v2/health/live", self.v2.live, ("GET",), "v2_live", public=True),
            Route("/v2/health/ready", self.v2.ready, ("GET",), "v2_ready", public=True),
            Route("/v2/models/{model}", self.v2.model_metadata, ("GET",), "v2_model"),
            Route("/v2/models/{model}/versions/{version}", self.v2.model_metadata, ("GET",), "v2_model"),
            Route("/v2/models/{model}/ready", self.v2.model_ready, ("GET",), "v2_model_ready", public=True),
            Route("/v2/models/{model}/versions/{version}/ready", self.v2.model_ready, ("GET",), "v2_model_ready",
                  public=True),
            Route("/v2/models/{model}/infer", self.v2.infer, ("POST",), "v2_infer"),
            Route("/v2/models/{model}/versions/{version}/infer", self.v2.infer, ("POST",), "v2_infer"),
            Route("/v2/repository/index", self.v2.repository_index, ("POST",), "v2_repository"),
            Route("/v2/repository/models/{model}/load", self.v2.repository_load, ("POST",), "v2_repository"),
            Route("/v2/repository/models/{model}/unload", self.v2.repository_unload, ("POST",), "v2_repository"),
            Route("/invocations", self._predict_route, ("POST",), "predict"),  # SageMaker's, as Truss serves it
            Route("/ping", self.surface.ping, ("GET",), "ping", public=True),  # a probe, as readiness
            Route("/v1/models/{model}/loaded", self.surface.ping, ("GET",), "loaded", public=True),
            Route("/v1/models/{model}/schema", self.surface.schema, ("GET",), "schema"),
            *openai.routes(self.surface),
            Route("/v1/websocket", WebsocketRoute(self), name="websocket", websocket=True),
            *self._jobs.routes(),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot path: a predict path seen before skips the route table.
        runtime = self._predict_paths.get(scope.get("path"))  # type: ignore[arg-type]
        if runtime is not None and scope.get("method") == "POST":
            await self._predict(scope, receive, send, runtime)
            return
        runtime = self._keyed_predict_paths.get(scope.get("path"))  # type: ignore[arg-type]
        if runtime is not None and scope.get("method") == "POST" \
                and self.api_keys is not None and self.api_keys.allows(scope):  # the same shortcut, with keys
            await self._predict(scope, receive, send, runtime)
            return
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):  # mounted under a prefix (uvicorn --root-path, a Serve route)
            path = path[len(root):] or "/"
        websocket = kind == "websocket"
        if not websocket and kind != "http":
            return
        method: str = "" if websocket else scope["method"]
        match = self.router.match(path, method, websocket=websocket)
        route = match.route
        if self._hosts is not None and (route is None or route.name not in _HEALTH) \
                and not self._host_allowed(_header(scope, b"host")):
            if websocket:
                await send({"type": "websocket.close", "code": 1008})
            else:
                await self._plain(send, 400, codecs.encode_json({"error": _bad_host(_header(scope, b"host"))}),
                                  "other")
        elif route is not None:
            # The one place keys are checked: every route, unless its table line says public=True.
            if self.api_keys is not None and not route.public and not self.api_keys.allows(scope):
                self.metrics.responses[route.name, 401] += 1
                await self.api_keys.deny(scope, send)
                return
            await route.endpoint(scope, receive, send, match.params)
        elif websocket:
            await send({"type": "websocket.close", "code": 1008})  # policy violation: no such route
        elif match.allowed:
            self.metrics.responses["other", METHOD_NOT_ALLOWED] += 1
            allowed = ", ".join(match.allowed)
            await _respond(send, METHOD_NOT_ALLOWED,
                           codecs.encode_json({"error": f"{method} is not allowed on {path}; use {allowed}."}),
                           _JSON, [(b"allow", allowed.encode())])
        else:
            await self._plain(send, NOT_FOUND, codecs.encode_json({"error": f"no route for {method} {path}."}),
                              "other")

    def cancellable(self, scope: Scope) -> bool:
        """Whether a request whose client left may be cancelled wherever it waits (predict's and V2
        infer's may). Asked only when a client leaves before its answer, never per request."""
        path = scope.get("path")
        if path in self._predict_paths or path in self._keyed_predict_paths:
            return True
        if type(path) is not str or not path.endswith("/infer"):
            return False
        root = scope.get("root_path")
        if root and path.startswith(root):
            path = path[len(root):]
        route = self.router.match(path, "POST").route
        return route is not None and route.name in _CANCELLABLE

    def _all_stats(self) -> list[RuntimeStats]:
        return [self.runtime.stats] if self.models is None else [r.stats for r in self.models.runtimes.values()]

    def _host_allowed(self, host: bytes | None) -> bool:
        hosts = self._hosts
        return hosts is None or host is None or host in hosts or host.lower() in hosts

    def new_request_id(self) -> str:
        return self._id_prefix + str(next(self._ids))

    async def _predict_route(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        runtime = self.runtime
        if self.models is not None and "model" in params:
            try:
                runtime = self.models.get(params["model"])
            except RequestError as exc:
                status, body, headers = error_answer(exc, "", debug=self.debug)
                await _respond(send, status, body, _JSON, headers)
                self.metrics.answer(status, 0.0)
                return
        surface = runtime.surface
        if surface is not None and not surface.plain:  # decided at load: Truss's surface, never the hot path
            await self.surface.call("predict", scope, receive, send, runtime)
            return
        # Loaded and plain: with one model any name reaches it; remember a few for the hot path, which
        # skips the route table. With API keys they go to a map of their own, whose shortcut checks the key first.
        paths = self._predict_paths if self.api_keys is None else self._keyed_predict_paths
        if len(paths) < 64 and surface is not None:
            paths[scope["path"]] = runtime
        await self._predict(scope, receive, send, runtime)

    def _forget(self, runtime: Runtime) -> None:
        """An unloaded model's paths leave the hot path."""
        for paths in (self._predict_paths, self._keyed_predict_paths):
            for path in [p for p, r in paths.items() if r is runtime]:
                del paths[path]
        if runtime is self.runtime and self.models is not None and self.models.runtimes:
            self.runtime = next(iter(self.models.runtimes.values()))  # so as not to keep the unloaded one alive

    def model(self, name: str) -> Runtime:
        """The runtime a request naming ``name`` reaches (raises ModelNotFoundError, NotReadyError)."""
        return self.runtime if self.models is None else self.models.get(name)

    async def _liveness(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await _respond(send, 200, _OK, _JSON)

    async def _root(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        """A browser gets the playground; API clients and probes keep the liveness JSON."""
        if self.playground.wants_page(scope):
            await self.playground.page_at_root(send)
        else:
            await _respond(send, 200, _OK, _JSON)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        body = self.metrics.render(waiting=self.runtime.waiting)
        if self.models is not None:
            body += self.models.metrics()
        if self.jobs is not None:
            body += ("\n".join(self.jobs.metrics_lines()) + "\n").encode()
        await _respond(send, 200, body, b"text/plain; version=0.0.4; charset=utf-8")

    async def _openapi_json(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await _respond(send, 200, self._openapi, _JSON)

    async def _plain(self, send: Send, status: int, body: bytes, route: str) -> None:
        self.metrics.responses[route, status] += 1
        await _respond(send, status, body, _JSON)

    async def _readiness(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        try:
            runtime = self.model(params["model"])
        except RequestError as exc:
            status, body, headers = error_answer(exc, "", debug=self.debug)
            await _respond(send, status, body, _JSON, headers)
            return
        state = runtime.state
        if self.watchdog is not None and self.watchdog.stuck:
            await _respond(send, *_answer(NotReadyError(self.watchdog.sentence + ".")))
            return
        if state is State.READY and await runtime.is_healthy():
            ready = {"name": runtime.name, "ready": True}
            if self.reload_error is not None:  # still serving the last version that loaded
                ready["reload_error"] = self.reload_error
            await _respond(send, 200, codecs.encode_json(ready), _JSON)
            return
        not_ready: KingpostError
        if state is State.READY:
            not_ready = NotReadyError("the model reports it is unhealthy.")
        elif state is State.FAILED:
            not_ready = ModelLoadError(f"the model failed to load: {self.redact(str(runtime.failure))}")
        else:
            activity = runtime.activity
            not_ready = NotReadyError(f"the model is loading ({activity})." if activity else "the model is loading.")
        await _respond(send, *_answer(not_ready))

    # -- predict -----------------------------------------------------------------------------------

    async def _predict(self, scope: Scope, receive: Receive, send: Send, runtime: Runtime) -> None:
        start = perf_counter()
        content_type = None
        length = -1
        host = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"host":
                host = value
        watcher: asyncio.Task[None] | None = None
        gone: Callable[[], bool] | None = None
        status = 200
        try:
            binary = False if content_type == _JSON else _media(content_type)
            hosts = self._hosts
            if hosts is not None and host not in hosts and not self._host_allowed(host):
                raise InputError(_bad_host(host))
            if length > self.max_bytes:  # refused before a byte of the body is read
                raise PayloadTooLargeError(self._too_large(length))
            message = await receive()  # the usual case, a body in one message, without another coroutine
            body = message.get("body", b"")
            if message.get("more_body") or message["type"] != "http.request" or length > self.max_bytes \
                    or len(body) > self.max_bytes:
                body = await self._read_body(receive, length, message)
            if len(body) > self._decode_in_thread:
                model_input = await self.decoder.decode_off_loop(body, binary)
            else:
                model_input = self.decoder.decode(body, binary)
            if self._uvicorn:
                cycle = receive.__self__  # type: ignore[attr-defined]
                gone = lambda: cycle.disconnected  # noqa: E731 - asked once, before predict runs
                result = await runtime.predict(model_input, gone=gone)
            else:
                watcher = _watch_disconnect(receive)
                gone = watcher.done
                result = await runtime.predict(model_input)
                if type(result) is not ChunkStream:
                    watcher.cancel()  # the watcher is needed while waiting and while streaming only
            if type(result) is ChunkStream:
                await self._stream(send, result, _header(scope, b"accept"), gone,
                                   timeout=runtime.config.runtime.streaming_read_timeout or None)
            elif binary:
                # Truss answers msgpack as application/octet-stream; its clients may check for that type.
                octet = content_type is not None and content_type.partition(b";")[0].strip().lower() == _OCTET
                media = _OCTET if octet else _MSGPACK
                await _respond(send, 200, codecs.encode_msgpack(result), media)
            else:  # _respond, written out: the hot path
                out = codecs.encode_json(result)
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", _JSON), (b"content-length", str(len(out)).encode())]})
                await send({"type": "http.response.body", "body": out})
        except codecs.PassThrough as passed:  # predict returned a Starlette Response: sent as it is
            status = await send_returned(runtime, passed.response, gone if watcher is None else None,
                                         scope, receive, send)
        except ClientGone as exc:
            status = status_of(exc)
        except asyncio.CancelledError:
            if watcher is not None and watcher.done() and not watcher.cancelled():
                status = status_of(ClientGone())  # the watcher cancelled us: the client disconnected
            elif self._uvicorn and getattr(getattr(receive, "__self__", None), "disconnected", False):
                status = status_of(ClientGone())  # the protocol cancelled us: the client disconnected
            else:  # the server gave up on us (past --grace-period): say so in JSON, then stop
                with contextlib.suppress(Exception):
                    await _respond(send, *_answer(_SHUTTING_DOWN))
                raise
        except Exception as exc:  # noqa: BLE001 - every error becomes an answer; the server keeps serving
            given_id = _header(scope, b"x-request-id")
            request_id = given_id.decode("latin-1") if given_id else self.new_request_id()
            status, err_body, headers = error_answer(exc, request_id, debug=self.debug, redact=self.redact)
            await _respond(send, status, err_body, _JSON, headers)
        finally:
            if watcher is not None:
                watcher.cancel()
        elapsed = perf_counter() - start
        if status == 200:
            answered = self._answered
            answered.append(elapsed)
            if len(answered) >= ServerMetrics.FOLD_EVERY:
                self.metrics.fold()
        else:
            self.metrics.answer(status, elapsed)
        if self.access_log is not None:
            self.access_log.add(scope, status, elapsed)

    async def _read_body(self, receive: Receive, length: int, message: Message) -> bytes:
        """The whole body, from its first message on, refused (413) as soon as it is too large."""
        limit = self.max_bytes
        if length > limit:
            raise PayloadTooLargeError(self._too_large(length))
        if message["type"] == "http.disconnect":
            raise ClientGone
        body: bytes = message.get("body", b"")
        if len(body) > limit:  # a chunked upload (no Content-Length) can arrive whole in one message
            raise PayloadTooLargeError(self._too_large(len(body), more=message.get("more_body", False)))
        if not message.get("more_body"):
            return body
        parts = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(self._too_large(size, more=True))
            parts.append(chunk)
            if not message.get("more_body"):
                return b"".join(parts)

    def _too_large(self, size: int, *, more: bool = False) -> str:
        found = f"more than {size}" if more else str(size)
        return (f"the request body is {found} bytes; runtime.max_request_bytes allows {self.max_bytes}.")

    async def _stream(self, send: Send, stream: ChunkStream, accept: bytes | None, gone: Callable[[], bool],
                      content_type: bytes = _OCTET, timeout: float | None = None) -> None:
        """Answer a streaming predict: chunked by default, SSE on request, gathered for plain JSON.

        A gap longer than ``timeout`` (``runtime.streaming_read_timeout``) between two chunks cuts
        the stream, as in Truss: the connection is closed without the final chunk.

        Chunks are taken as they are ready (``ChunkStream.take``, a plain call) and each is sent as
        it was yielded; the loop awaits the stream (and arms the timeout) only when no chunk is ready.
        """
        try:
            if accept is not None and accept.strip().lower() == _JSON:
                parts = [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) async for c in stream]
                await _respond(send, 200, codecs.encode_json("".join(parts)), _JSON)
                return
            sse = accept is not None and b"text/event-stream" in accept
            encode = codecs.encode_sse_event if sse else codecs.chunk_bytes
            watchdog = self.watchdog
            take, wait = stream.take, stream.wait
            chunk = take()
            try:
                while chunk is EMPTY:
                    await wait(timeout)
                    chunk = take()
            except TimeoutError:
                raise DeadlineExceeded(f"the model's stream produced nothing for {timeout:g} s "
                                       "(runtime.streaming_read_timeout).") from None
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream" if sse else content_type),
                                    (b"cache-control", b"no-cache")]})
            if chunk is not END:
                try:
                    while True:
                        if chunk is EMPTY:
                            await wait(timeout)
                        else:
                            if watchdog is not None:
                                watchdog.chunks += 1  # progress: a stream is not a stuck predict
                            await send({"type": "http.response.body", "body": encode(chunk), "more_body": True})
                        chunk = take()
                        if chunk is END or gone():
                            break
                except TimeoutError:
                    logger.error("the model's stream produced nothing for %g s (runtime.streaming_read_timeout); "
                                 "the stream was cut", timeout)
                    raise StreamCut from None
                except Exception as exc:  # noqa: BLE001 - logged, and told to an SSE client
                    logger.error("stream failed after it started: %s\n%s", self.redact(str(exc)),
                                 self.redact.traceback(exc.__cause__ or exc))
                    if sse:
                        msg = codecs.encode_json({"error": f"the model's predict failed mid-stream: {exc}"
                                                  if self.debug else "the model's predict failed mid-stream."})
                        await send({"type": "http.response.body", "body": b"event: error\ndata: " + msg + b"\n\n",
                                    "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await stream.aclose()

    # -- lifespan ----------------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.jobs is not None:
                    try:
                        await self.jobs.start()
                    except Exception as exc:  # noqa: BLE001 - the database is unreachable: say so, do not serve
                        await send({"type": "lifespan.startup.failed", "message": str(exc)})
                        return
                if self.runtime.state is State.NEW:
                    if self.load_before_serving:
                        await self._load()
                    else:
                        self.load_task = asyncio.get_running_loop().create_task(self._load())
                if self.watchdog is not None:
                    self.watchdog.start()
                await send({"type": "lifespan.startup.complete"})
                if self.reloader is not None:
                    self.reloader.start()
            elif message["type"] == "lifespan.shutdown":
                if self.reloader is not None:
                    await self.reloader.stop()
                if self.watchdog is not None:
                    self.watchdog.stop()
                if self.access_log is not None:
                    self.access_log.flush()
                self.decoder.shutdown()
                if self.jobs is not None:
                    await self.jobs.stop()  # its running jobs go back to the queue
                await (self.runtime.stop() if self.models is None else self.models.stop_all())
                await send({"type": "lifespan.shutdown.complete"})
                return

    def switch(self, runtime: Runtime) -> Runtime:
        """Serve ``runtime`` from now on (a reloaded version); returns the one it replaces.

        Requests already inside the old runtime hold it and finish there.
        """
        old, self.runtime = self.runtime, runtime
        for paths in (self._predict_paths, self._keyed_predict_paths):  # the hot path's caches, too
            for path in [p for p, r in paths.items() if r is old]:
                if runtime.plain:
                    paths[path] = runtime
                else:  # the new version uses Truss's surface: its predict goes through the route table
                    del paths[path]
        self.metrics.stats = runtime.stats
        self.max_bytes = runtime.config.runtime.max_request_bytes
        self._adopt()
        return old

    async def _load(self) -> None:
        try:
            await (self.runtime.start() if self.models is None else self.models.start_all())
        except ModelLoadError as exc:
            logger.error("the model failed to load: %s\n%s", self.redact(str(exc)),
                         self.redact.traceback(exc.__cause__ or exc))
            if self.on_load_failure is not None:
                self.on_load_failure(exc)
            return
        self._adopt()
        heap.settle()  # what is alive now lives as long as the server: out of the collector's way

    def _adopt(self) -> None:
        """Once the model is loaded: its schema and Truss surface routes join /openapi.json and the playground."""
        self.playground.adopt(self._describe())

    def _describe(self) -> dict[str, Any]:
        """/openapi.json, in the one place it is made: Truss's paths, the model's surface once known, V2, jobs."""
        runtime = self.runtime
        spec = openapi.spec(runtime.config, runtime.bundle_dir.name)
        if runtime.surface is not None:
            spec = openapi.with_surface(spec, runtime.surface)
        spec = v2_openapi(spec)
        if self.jobs is not None:
            spec["paths"].update(openapi_paths())
        self._openapi = codecs.encode_json(spec)
        return spec


# Routes (besides predict's, known by path) whose requests stop when their client leaves.
_CANCELLABLE = frozenset({"v2_infer"})


def _bad_host(host: bytes | None) -> str:
    shown = (host or b"").decode("latin-1")[:100]
    return (f"the Host header {shown!r} is not one this server answers to; "
            "runtime.limits.allowed_hosts lists those allowed.")


def _media(content_type: bytes | None) -> bool:
    """Whether a predict body is msgpack (True) or JSON (False), from its Content-Type; else 415."""
    if content_type is not None:
        media = content_type.partition(b";")[0].strip().lower()
        if media == _JSON:
            return False
        if codecs.wants_msgpack(media):
            return True
    shown = "none" if content_type is None else repr(content_type.decode("latin-1")[:100])
    raise UnsupportedMediaType(f"the request's Content-Type is {shown}; send application/json, or "
                               "application/msgpack (or application/octet-stream) for msgpack.")


def _secret_values(runtimes: Iterable[Runtime]) -> list[str | None]:
    """The bundles' secret values as their models see them, for redaction (read once, at startup)."""
    values: list[str | None] = []
    for runtime in runtimes:
        for name in runtime.secrets:
            try:
                values.append(runtime.secrets[name])
            except OSError:
                continue
    return values


def _watch_disconnect(receive: Receive) -> asyncio.Task[None]:
    """A task that cancels the current request's task when its client disconnects."""
    task = asyncio.current_task()
    assert task is not None

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                task.cancel()
                return

    return asyncio.get_running_loop().create_task(watch())




def _answer(exc: KingpostError) -> tuple[int, bytes, bytes, Headers]:
    """``_respond``'s arguments for an error that needs no request id (readiness, the shutdown)."""
    status, body, headers = error_answer(exc, "", debug=False)
    return status, body, _JSON, headers


__all__ = ["App"]
