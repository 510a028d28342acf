"""The Open Inference Protocol (KServe V2 / Triton / MLServer) over REST, beside Truss's paths.

| path | answer |
|---|---|
| GET /v2/health/live, /v2/health/ready          | 200 true, 400 false (the protocol's "4xx is false") |
| GET /v2                                        | server metadata: name, version, extensions |
| GET /v2/models/<m>[/versions/1]                | model metadata: inputs and outputs from config.yaml's ``signature`` |
| GET /v2/models/<m>[/versions/1]/ready          | 200 ready, 400 not ready |
| POST /v2/models/<m>[/versions/1]/infer         | tensors in, tensors out (JSON or binary: ``kingpost.codecs_v2``) |
| POST /v2/repository/index                      | every model and its state |
| POST /v2/repository/models/<m>/load, /unload   | load or unload a model while serving (several bundles only) |

An infer goes through the same runtime as ``:predict``: preprocess, the predict lock, batching,
postprocess, the queue and timeout limits. Errors are ``{"error": "<one sentence>"}`` with the
statuses of ``kingpost.server.http``.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from time import perf_counter
from typing import TYPE_CHECKING, Any

from kingpost import codecs, codecs_v2
from kingpost._version import __version__
from kingpost.errors import (
    ClientGone,
    InputError,
    ModelLoadError,
    ModelNotFoundError,
    RequestError,
    UnsupportedMediaType,
)
from kingpost.predictor.streams import ChunkStream
from kingpost.server.http import JSON, SHUTTING_DOWN, error_answer, header, respond, status_of
from kingpost.types import Params, Receive, Scope, Send, State

if TYPE_CHECKING:
    from kingpost.runtime import Runtime
    from kingpost.server.app import App

EXTENSIONS = ["binary_tensor_data", "parameters", "model_repository"]
VERSION = "1"  # a bundle has one version
_OCTET = b"application/octet-stream"
_EMPTY = b"{}"
# What an infer body may be labelled: JSON, the binary extension's octet-stream (tritonclient's aio
# client sends it for JSON too), or nothing (tritonclient's sync client sends no Content-Type).
_INFER_MEDIA = (JSON, _OCTET)


class V2:
    """The V2 route handlers of one :class:`~kingpost.server.app.App`."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._server = codecs.encode_json({"name": "kingpost", "version": __version__, "extensions": EXTENSIONS})
        decoder = app.decoder
        self._loads = lambda head: decoder.decode(head, False)  # the JSON header, within the limits

    # -- health and metadata --------------------------------------------------------------------

    async def live(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await respond(send, 200, b'{"live":true}')

    async def ready(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        app = self.app
        runtimes = [app.runtime] if app.models is None else list(app.models.runtimes.values())
        ready = all(r.state is State.READY for r in runtimes) and all([await r.is_healthy() for r in runtimes])
        await respond(send, 200 if ready else 400, b'{"ready":true}' if ready else b'{"ready":false}')

    async def server_metadata(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await respond(send, 200, self._server)

    async def model_metadata(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        runtime = await self._model(send, params)
        if runtime is None:
            return
        signature = runtime.config.signature
        answer: dict[str, Any] = {"name": params["model"], "versions": [VERSION], "platform": "kingpost"}
        if signature is None:
            answer |= {"inputs": [], "outputs": [], "parameters": {
                "signature": "not declared; add a signature section (inputs, outputs) to config.yaml to publish it. "
                             "Infer works without one."}}
        else:
            answer |= {"inputs": [_tensor(t) for t in signature.inputs],
                       "outputs": [_tensor(t) for t in signature.outputs]}
        await respond(send, 200, codecs.encode_json(answer))

    async def model_ready(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        runtime = await self._model(send, params)
        if runtime is None:
            return
        ready = await runtime.is_healthy()
        await respond(send, 200 if ready else 400, codecs.encode_json({"name": params["model"], "ready": ready}))

    async def _model(self, send: Send, params: Params) -> Runtime | None:
        """The runtime the path names, or None once the error is answered."""
        try:
            version = params.get("version")
            if version is not None and version != VERSION:
                raise ModelNotFoundError(f"model {params['model']!r} has one version, {VERSION}; found {version!r}.")
            return self.app.model(params["model"])
        except RequestError as exc:
            await self._error(send, exc, "")
            return None

    async def _error(self, send: Send, exc: BaseException, request_id: str) -> int:
        status, body, headers = error_answer(exc, request_id, debug=self.app.debug)
        await respond(send, status, body, JSON, headers)
        return status

    # -- infer ----------------------------------------------------------------------------------

    async def infer(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        app = self.app
        start = perf_counter()
        status = 200
        request: codecs_v2.InferRequest | None = None
        gone = None
        if app._uvicorn:
            cycle = receive.__self__  # type: ignore[attr-defined]
            gone = lambda: cycle.disconnected  # noqa: E731
        try:
            _check_media(header(scope, b"content-type"))
            version = params.get("version")
            if version is not None and version != VERSION:
                raise ModelNotFoundError(f"model {params['model']!r} has one version, {VERSION}; found {version!r}.")
            runtime = app.model(params["model"])
            body = await self._body(scope, receive)
            length = header(scope, b"inference-header-content-length")
            if length is not None and not length.isdigit():
                raise InputError(f"Inference-Header-Content-Length must be a number of bytes, found {length!r}.")
            head = int(length) if length is not None else None
            if len(body) > app._decode_in_thread:  # as :predict does: a big body is decoded off the loop
                request = await app.decoder.off_loop(codecs_v2.decode_request, body, head, self._loads)
            else:
                request = codecs_v2.decode_request(body, head, self._loads)
            signature = runtime.config.signature
            if signature is not None and signature.inputs:
                codecs_v2.check_inputs(request, signature)
            result = await runtime.predict(codecs_v2.model_input(request), gone=gone)
            if type(result) is ChunkStream:
                await result.aclose()
                raise InputError("the model streams its output, and a V2 infer answers with whole tensors: "
                                 "call its :predict route instead.")
            out, out_head = codecs_v2.encode_response(result, request, params["model"], signature, version)
            if out_head is None:
                await respond(send, 200, out)
            else:
                await respond(send, 200, out, _OCTET, [(b"inference-header-content-length", str(out_head).encode())])
        except ClientGone as exc:
            status = status_of(exc)
        except asyncio.CancelledError:
            # The guard protocol cancels an infer whose client left (App.cancellable); the server
            # past --grace-period cancels the others: say so in JSON, as :predict does, then stop.
            if gone is None or not gone():
                with contextlib.suppress(Exception):
                    await self._error(send, SHUTTING_DOWN, "")
                raise
            status = status_of(ClientGone())
        except Exception as exc:  # noqa: BLE001 - every error becomes an answer; the server keeps serving
            given = header(scope, b"x-request-id")
            request_id = given.decode("latin-1") if given else (request.id if request and request.id else "-")
            status = await self._error(send, exc, request_id)
        app.metrics.responses["v2_infer", status] += 1
        if app.access_log is not None:
            app.access_log.add(scope, status, perf_counter() - start)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        length = header(scope, b"content-length")
        body = await self.app._read_body(receive, int(length) if length and length.isdigit() else -1, await receive())
        encoding = header(scope, b"content-encoding")
        if encoding is None or encoding == b"identity":
            return body
        if encoding not in (b"gzip", b"deflate"):
            raise InputError(f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; use gzip or deflate.")
        inflate = zlib.decompressobj(wbits=31 if encoding == b"gzip" else 15)
        try:
            plain = inflate.decompress(body, self.app.max_bytes + 1)
        except zlib.error as exc:
            raise InputError(f"the body is not valid {encoding.decode()} data: {exc}.") from exc
        if len(plain) > self.app.max_bytes:
            raise InputError(f"the decompressed body is larger than runtime.max_request_bytes ({self.app.max_bytes}).")
        return plain

    # -- repository -----------------------------------------------------------------------------

    async def repository_index(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        app = self.app
        if app.models is None:
            rt = app.runtime
            state = "READY" if rt.state is State.READY else "UNAVAILABLE" if rt.state is State.FAILED else "LOADING"
            index = [{"name": rt.name, "version": VERSION, "state": state, "reason": rt.failure or ""}]
        else:
            index = app.models.index()
        await respond(send, 200, codecs.encode_json(index))

    async def repository_load(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await self._change(send, params["model"], load=True)

    async def repository_unload(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await self._change(send, params["model"], load=False)

    async def _change(self, send: Send, name: str, *, load: bool) -> None:
        models = self.app.models
        try:
            if models is None:
                raise InputError("this server serves one bundle; serve several bundles or a repository directory "
                                 "to load and unload models while serving.")
            await (models.load(name) if load else models.unload(name))
        except ModelLoadError as exc:
            await respond(send, 400, codecs.encode_json({"error": f"model {name!r} failed to load: {exc}"}))
            return
        except RequestError as exc:
            await self._error(send, exc, "")
            return
        await respond(send, 200, _EMPTY)


def _check_media(content_type: bytes | None) -> None:
    """415 unless the body is labelled as the protocol allows: JSON, octet-stream or nothing."""
    if content_type is None or content_type == JSON:
        return
    media = content_type.partition(b";")[0].strip().lower()
    if media in _INFER_MEDIA:
        return
    raise UnsupportedMediaType(f"the request's Content-Type is {content_type.decode('latin-1')[:100]!r}; a V2 infer "
                               "body is application/json, or application/octet-stream with binary tensors.")


def _tensor(t: Any) -> dict[str, Any]:
    return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}


def v2_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (the app's OpenAPI description) with the V2 paths added."""
    name = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}

    def op(summary: str, description: str, method: str = "get", params: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"summary": summary, "description": description,
                                "responses": {"200": {"description": "OK"}}}
        if params:
            body["parameters"] = [name]
        return {method: body}

    paths = {
        "/v2/health/live": op("V2 liveness", "200 while the process is up.", params=False),
        "/v2/health/ready": op("V2 readiness", "200 when every model is ready, else 400.", params=False),
        "/v2": op("V2 server metadata", "Name, version and extensions.", params=False),
        "/v2/models/{model_name}": op("V2 model metadata", "Inputs and outputs from config.yaml's signature."),
        "/v2/models/{model_name}/ready": op("V2 model readiness", "200 ready, 400 not ready."),
        "/v2/models/{model_name}/infer": op(
            "V2 infer", "Open Inference Protocol tensors in and out: JSON, or a JSON header followed by binary "
            "tensors (Inference-Header-Content-Length).", "post"),
        "/v2/repository/index": op("V2 repository index", "Every model and its state.", "post", params=False),
        "/v2/repository/models/{model_name}/load": op("V2 load a model", "Several bundles only.", "post"),
        "/v2/repository/models/{model_name}/unload": op("V2 unload a model", "Several bundles only.", "post"),
    }
    return {**spec, "paths": {**spec["paths"], **paths}}
