"""Truss's model surface over HTTP: predict for bundles that take a request, typed input or
serve OpenAI-style methods; the schema; ``/ping`` and ``/v1/models/{model}/loaded``.

A plain bundle never comes here for ``:predict``: the app swaps :meth:`SurfaceRoutes.predict` in
for its own hot path only once the loaded model turns out not to be plain.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from kingpost import codecs
from kingpost.errors import ClientGone, NotReadyError, RequestError
from kingpost.predictor.streams import ChunkStream
from kingpost.server.http import NOT_READY_HEADERS, error_answer
from kingpost.server.http import respond as _respond
from kingpost.server.responses import send_response
from kingpost.types import Params, Receive, Scope, Send, State

if TYPE_CHECKING:
    from kingpost.runtime import Runtime
    from kingpost.server.app import App

logger = logging.getLogger("kingpost.server")

_JSON = b"application/json"
_OCTET = b"application/octet-stream"


class SurfaceRoutes:
    """Handlers that answer from the runtime's :class:`~kingpost.surface.Surface`."""

    def __init__(self, app: App) -> None:
        self.app = app

    # -- predict and the OpenAI-style methods --------------------------------------------------

    async def call(self, method: str, scope: Scope, receive: Receive, send: Send,
                   runtime: Runtime | None = None) -> None:
        """Read the body, hand the runtime the input and (when a hook takes one) the request, answer.

        ``runtime`` is the model the path named; the OpenAI-style paths name none: the first model.
        """
        app = self.app
        runtime = runtime or app.runtime
        start = perf_counter()
        status = 200
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type")
        binary = content_type is not None and content_type.partition(b";")[0].strip().lower() == _OCTET
        try:
            message = await receive()
            body = await app._read_body(receive, _length(headers), message)
            surface = runtime.surface
            if surface is None:
                raise NotReadyError(runtime._not_ready_reason())
            request = _request(scope, receive, body) if surface.wants_request else None
            if method == "predict" and surface.skip_input_parsing:
                value = None
            else:
                value = codecs.decode_msgpack(body) if binary else codecs.decode_json(body)
            gone = _gone(receive) if app._uvicorn else None
            result = await runtime.invoke(value, request=request, method=method, gone=gone)
            if type(result) is ChunkStream:
                timeout = runtime.config.runtime.streaming_read_timeout or None
                await self._stream(method, send, result, headers, gone or _never, timeout)
            elif codecs.is_response(result):
                status = await send_response(result, scope, receive, send)
            else:
                out = codecs.encode_msgpack(result) if binary else codecs.encode_json(result)
                await _respond(send, 200, out, _OCTET if binary else _JSON)
        except codecs.PassThrough as passed:  # a response object inside a ChunkStream's gather, say
            status = await send_response(passed.response, scope, receive, send)
        except ClientGone:
            status = 499
        except Exception as exc:  # noqa: BLE001 - every error becomes an answer; the server keeps serving
            given = headers.get(b"x-request-id")
            request_id = given.decode("latin-1") if given else app._id_prefix + str(next(app._ids))
            status, err_body, extra = error_answer(exc, request_id, debug=app.debug)
            with contextlib.suppress(Exception):  # the answer may have started (a stream cut short)
                await _respond(send, status, err_body, _JSON, extra)
        app.metrics.answer(status, perf_counter() - start)
        if app.access_log is not None:
            app.access_log.add(scope, status, perf_counter() - start)

    async def _stream(self, method: str, send: Send, stream: ChunkStream, headers: dict[bytes, bytes],
                      gone: Callable[[], bool], timeout: float | None) -> None:
        if method == "predict":
            await self.app._stream(send, stream, headers.get(b"accept"), gone, timeout=timeout)
            return
        # OpenAI-style methods yield their own wire format (SSE lines): sent as they come, as in
        # Truss, and never gathered for the OpenAI SDK, which asks for JSON even when it streams.
        agent = headers.get(b"user-agent", b"").lower()
        accept = _JSON if b"openai" not in agent and headers.get(b"accept") == _JSON else None
        await self.app._stream(send, stream, accept, gone, content_type=_OCTET, timeout=timeout)

    # -- the schema, /ping, /loaded ---------------------------------------------------------------

    async def schema(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        try:
            runtime = self.app.model(params["model"])
        except RequestError as exc:
            status, body, extra = error_answer(exc, "", debug=False)
            await _respond(send, status, body, _JSON, extra)
            return
        schema = runtime.surface.schema() if runtime.surface is not None else None
        if schema is not None:
            await _respond(send, 200, codecs.encode_json(schema), _JSON)
        elif runtime.state is State.READY:
            await _respond(send, 404, b'{"error":"the model has no schema: neither its input nor its output is '
                                      b'annotated with a pydantic model."}', _JSON)
        else:
            await _respond(send, 503, b'{"error":"the schema is known once the model has loaded; retry shortly."}',
                           _JSON, [(b"retry-after", b"1")])

    async def ping(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        """Truss's ``/ping`` (SageMaker) and ``/v1/models/{model}/loaded``: 200 ``{}`` once loaded."""
        runtime = self.app.runtime
        if runtime.state is State.READY:
            await _respond(send, 200, b"{}", _JSON)
        elif runtime.state is State.FAILED:
            await _respond(send, 500, codecs.encode_json({"error": f"the model failed to load: {runtime.failure}"}),
                           _JSON, NOT_READY_HEADERS)
        else:
            await _respond(send, 503, b'{"error":"the model is loading."}', _JSON,
                           [(b"retry-after", b"1"), *NOT_READY_HEADERS])


def _length(headers: dict[bytes, bytes]) -> int:
    value = headers.get(b"content-length", b"")
    return int(value) if value.isdigit() else -1


def _request(scope: Scope, receive: Receive, body: bytes) -> Any:
    """A real Starlette Request for this call, its body already read (``await request.body()`` works)."""
    from starlette.requests import Request

    request = Request(scope, receive)
    request._body = body  # starlette keeps the read body here; the stream itself is consumed
    return request


def _gone(receive: Receive) -> Callable[[], bool]:
    cycle = receive.__self__  # type: ignore[attr-defined]  # uvicorn's request cycle
    return lambda: bool(cycle.disconnected)


def _never() -> bool:
    return False


__all__ = ["SurfaceRoutes"]
