"""OpenTelemetry traces, on when the standard ``OTEL_*`` environment asks for them.

Each HTTP request is a server span (``POST /v1/models/{model}:predict``), continuing the caller's
W3C ``traceparent``, with the model name, route, status and request id as attributes. A predict
request gets children ``preprocess``, ``queue wait``, ``predict`` (with ``kingpost.batch_size``)
and ``postprocess``, timed where the runtime runs them and recorded when the request ends.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``) or an
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` is set, and ``OTEL_SDK_DISABLED`` is not ``true``. Nothing
of OpenTelemetry is imported otherwise (``kingpost[otel]`` installs it). Sampling, batching and the
resource follow the SDK's own ``OTEL_*`` variables; ``service.name`` defaults to ``kingpost``.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kingpost.errors import KingpostError
from kingpost.runtime import Runtime
from kingpost.server.app import App
from kingpost.types import Message, Receive, Scope, Send, State

ASGIApp = Any


def wanted(env: dict[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (reads variables only, imports nothing)."""
    env = dict(os.environ) if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def from_environment(provider: Any = None) -> tuple[Any, bool] | None:
    """``(tracer provider, made here)`` when tracing is on (``provider`` given, or asked for by
    ``OTEL_*``), else None. A provider made here is shut down (its spans flushed) with the server."""
    if provider is None and not wanted():
        return None
    try:
        from opentelemetry.sdk.trace import TracerProvider  # noqa: F401 - checks the SDK is there
    except ImportError as exc:
        raise KingpostError("the OTEL_* environment asks for traces, but OpenTelemetry is not installed: "
                            "pip install 'kingpost[otel]'.") from exc
    if provider is not None:
        return provider, False
    return _provider_from_environment(), True


def _provider_from_environment() -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "kingpost"}
    provider = TracerProvider(resource=Resource.create(attributes))
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    for name in names:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
        elif name != "none":
            raise KingpostError(f"OTEL_TRACES_EXPORTER: expected otlp, console or none, found {name!r}.")
    return provider


def _otlp_exporter() -> Any:
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            raise KingpostError(f"OTEL_EXPORTER_OTLP_PROTOCOL: expected http/protobuf or grpc, found {protocol!r}.")
    except ImportError as exc:
        raise KingpostError(f"OTLP over {protocol} needs its exporter: pip install 'kingpost[otel]'.") from exc
    return OTLPSpanExporter()


class _Record:
    """When each stage of one request ran (ns since the epoch; 0 = did not run)."""

    __slots__ = ("batch", "post_end", "post_start", "pre_end", "pre_start", "predict_end", "predict_start",
                 "submitted")

    def __init__(self) -> None:
        self.pre_start = self.pre_end = self.predict_start = self.predict_end = 0
        self.post_start = self.post_end = self.submitted = 0
        self.batch = 0


_current: contextvars.ContextVar[_Record | None] = contextvars.ContextVar("kingpost_trace_record", default=None)


class Tracing:
    """The tracing layer: a server span per request, stage spans for predicts."""

    def __init__(self, app: ASGIApp, kingpost_app: App, provider: Any, *, owned: bool = False) -> None:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.app = app
        self._router = kingpost_app.router
        self._templates: dict[tuple[str, str], str] = {}  # (method, path) -> the route's path template
        self._tracer = provider.get_tracer("kingpost")
        self._provider = provider if owned else None
        self._extract = propagate.extract
        self._server = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR)
        models = kingpost_app.models
        runtimes = [kingpost_app.runtime] if models is None else list(models.runtimes.values())
        self._model = kingpost_app.runtime.name if models is None else None  # else each stage span names its own
        self._traced = [_TracedRuntime(runtime, self._tracer) for runtime in runtimes]
        self._app = kingpost_app
        self._serving = kingpost_app.runtime  # serve --reload switches App.runtime: trace the new one too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            if scope["type"] == "lifespan" and self._provider is not None:
                self._provider.shutdown()  # the app has stopped: flush what is left
            return
        if self._app.runtime is not self._serving and self._app.models is None:
            self._serving = self._app.runtime
            self._traced = [_TracedRuntime(self._serving, self._tracer)]  # the old version is let go
        carrier: dict[str, str] = {}
        rid = None
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode()] = value.decode("latin-1")
            elif name == b"x-request-id":
                rid = value.decode("latin-1")
        method, path = scope["method"], scope["path"]
        template = self._templates.get((method, path))
        if template is None:
            route = self._router.match(path, method).route
            template = route.path if route is not None else "unmatched"
            if len(self._templates) < 1024:
                self._templates[method, path] = template
        attributes = {"http.request.method": method, "url.path": path, "http.route": template}
        if self._model is not None:
            attributes["kingpost.model"] = self._model
        if rid is not None:
            attributes["kingpost.request_id"] = rid
        context = self._extract(carrier) if carrier else None
        status = 499

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self._tracer.start_as_current_span(f"{method} {template}", context=context, kind=self._server,
                                                attributes=attributes) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(self._error)


class _TracedRuntime:
    """One runtime's stages, timed per request and recorded as spans under the request's span.

    Its ``predict`` replaces the runtime's (an instance attribute, set once at startup); the stage
    callables are wrapped once the runtime has loaded (they exist only then). The predict hook runs
    on a predict thread (or in a batch) without the request's context, so a request's record is
    found there by the identity of its input.
    """

    def __init__(self, runtime: Runtime, tracer: Any) -> None:
        self._runtime = runtime
        self._tracer = tracer
        self._model = runtime.name
        self._by_input: dict[int, _Record] = {}
        self._wired = False
        self._predict = runtime.predict
        object.__setattr__(runtime, "predict", self.predict)

    def predict(self, model_input: Any, *, gone: Callable[[], bool] | None = None) -> Awaitable[Any]:
        return self._run_traced(model_input, gone)

    async def _run_traced(self, model_input: Any, gone: Callable[[], bool] | None) -> Any:
        if not self._wired and self._runtime.state is State.READY:
            self._wire()
        record = _Record()
        token = _current.set(record)
        key = id(model_input)
        self._by_input[key] = record
        start = time.time_ns()
        try:
            return await self._predict(model_input, gone=gone)
        finally:
            _current.reset(token)
            self._by_input.pop(key, None)
            self._emit(record, start)

    def _wire(self) -> None:
        self._wired = True
        runtime: Any = self._runtime
        by_input = self._by_input
        pre, post = runtime._preprocess, runtime._postprocess
        if pre is not None:
            async def preprocess(value: Any) -> Any:
                record = _current.get()
                if record is None:
                    return await pre(value)
                by_input.pop(id(value), None)
                record.pre_start = time.time_ns()
                try:
                    out = await pre(value)
                finally:
                    record.pre_end = time.time_ns()
                by_input[id(out)] = record
                return out
            runtime._preprocess = preprocess
        if post is not None:
            async def postprocess(value: Any) -> Any:
                record = _current.get()
                if record is None:
                    return await post(value)
                record.post_start = time.time_ns()
                try:
                    return await post(value)
                finally:
                    record.post_end = time.time_ns()
            runtime._postprocess = postprocess
        hook = runtime._predictor._hook  # the one place predict is called (kingpost.hooks)
        fn = hook.fn
        batched = runtime._predictor._batching is not None

        def timed(inputs: Any, start: int) -> list[_Record]:
            items = inputs if batched else (inputs,)
            records = [r for r in (by_input.get(id(v)) for v in items) if r is not None]
            for r in records:
                r.predict_start, r.batch = start, len(items)
            return records

        def done(records: list[_Record]) -> None:
            end = time.time_ns()
            for r in records:
                r.predict_end = end

        if _is_async(fn):
            async def predict_async(inputs: Any) -> Any:
                records = timed(inputs, time.time_ns())
                try:
                    return await fn(inputs)
                finally:
                    done(records)
            hook.fn = predict_async
        else:
            def predict(inputs: Any) -> Any:
                records = timed(inputs, time.time_ns())
                try:
                    return fn(inputs)
                finally:
                    done(records)
            hook.fn = predict

    def _emit(self, record: _Record, start: int) -> None:
        tracer = self._tracer
        spans: list[tuple[str, int, int, int | None]] = []
        if record.pre_start:
            spans.append(("preprocess", record.pre_start, record.pre_end, None))
        if record.predict_start:
            waited_from = record.pre_end or start
            spans.append(("queue wait", waited_from, max(waited_from, record.predict_start), None))
            spans.append(("predict", record.predict_start, record.predict_end or time.time_ns(), record.batch))
        if record.post_start:
            spans.append(("postprocess", record.post_start, record.post_end, None))
        for name, begin, end, batch in spans:
            attributes: dict[str, Any] = {"kingpost.model": self._model}
            if batch is not None:
                attributes["kingpost.batch_size"] = batch
            tracer.start_span(name, start_time=begin, attributes=attributes).end(end_time=end)


def _is_async(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)
