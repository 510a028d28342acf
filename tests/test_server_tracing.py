"""OpenTelemetry traces: a server span per request with stage children, the caller's trace continued,
exported in memory (SDK exporter) and over OTLP/HTTP to a receiver on loopback; nothing imported when off."""

from __future__ import annotations

import asyncio
import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from conftest import bundle_path
from serving import Server

PREDICT = "/v1/models/model:predict"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
STAGES = {"preprocess", "queue wait", "predict", "postprocess"}


@pytest.fixture
def traced(request: pytest.FixtureRequest) -> Iterator[Callable[..., tuple[str, InMemorySpanExporter]]]:
    """``traced(bundle)`` serves the bundle with uvicorn on a loopback port in this process, tracing
    into an in-memory exporter; returns (url, exporter)."""
    stops: list[Callable[[], None]] = []

    def start(bundle: Path) -> tuple[str, InMemorySpanExporter]:
        from kingpost.config import load_config
        from kingpost.runtime import Runtime
        from kingpost.server.stack import build

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _, app = build(Runtime(bundle, load_config(bundle)), tracer_provider=provider, on_uvicorn=True,
                       access_log=False)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

        def stop() -> None:
            server.should_exit = True
            thread.join(10)
            sock.close()

        stops.append(stop)
        for _ in range(500):
            try:
                if httpx.get(url + "/v1/models/model", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            threading.Event().wait(0.02)
        exporter.clear()
        return url, exporter

    yield start
    for stop in stops:
        stop()


def test_a_predict_is_a_server_span_with_stage_children(traced: Callable[..., Any]) -> None:
    url, exporter = traced(bundle_path("echo"))
    answer = httpx.post(url + PREDICT, json={"x": 1}, headers={
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "X-Request-Id": "r-1"})
    assert answer.json() == {"x": 1}
    spans = exporter.get_finished_spans()
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    assert server.name == "POST /v1/models/{model}:predict"
    assert format(server.context.trace_id, "032x") == TRACE_ID  # the caller's trace, continued
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    attrs = dict(server.attributes or {})
    assert attrs["http.response.status_code"] == 200 and attrs["kingpost.model"] == "echo"
    assert attrs["kingpost.request_id"] == "r-1" and attrs["http.route"] == "/v1/models/{model}:predict"
    children = {s.name: s for s in spans if s.parent is not None and s.parent.span_id == server.context.span_id}
    assert set(children) == STAGES
    assert children["predict"].attributes["kingpost.batch_size"] == 1  # type: ignore[index]
    pre, wait, pred, post = (children[n] for n in ("preprocess", "queue wait", "predict", "postprocess"))
    assert pre.start_time <= pre.end_time <= wait.end_time <= pred.start_time + 1  # type: ignore[operator]
    assert pred.end_time <= post.start_time <= post.end_time <= server.end_time  # type: ignore[operator]


def test_batch_size_and_error_status(traced: Callable[..., Any], copy_bundle: Callable[..., Path]) -> None:
    url, exporter = traced(copy_bundle("echo", runtime={"batching": {"max_batch_size": 4, "max_wait_ms": 200}}))

    async def three() -> list[httpx.Response]:
        async with httpx.AsyncClient() as client:
            return list(await asyncio.gather(*(client.post(url + PREDICT, json=i) for i in range(3))))

    assert [r.json() for r in asyncio.run(three())] == [0, 1, 2]
    sizes = [s.attributes["kingpost.batch_size"] for s in exporter.get_finished_spans()  # type: ignore[index]
             if s.name == "predict"]
    assert len(sizes) == 3 and max(sizes) >= 2  # batched together (200 ms window), each span says its batch
    assert all(sizes.count(size) % size == 0 for size in sizes)

    url2, exporter2 = traced(bundle_path("hook_raises"))
    assert httpx.post(url2 + PREDICT, json={"raise": "predict"}).status_code == 500
    server = next(s for s in exporter2.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert server.status.status_code.name == "ERROR" and server.attributes["http.response.status_code"] == 500  # type: ignore[index]
    assert 'liveness' not in {s.name for s in exporter2.get_finished_spans()}


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_otlp_http_export_from_a_real_server(serve: Callable[..., Server]) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _Receiver.bodies = []
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
               "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_SERVICE_NAME": "kp-test"}
        server = serve("echo", env=env)
        answer = httpx.post(server.url + PREDICT, json=[5], headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        assert answer.json() == [5]

        def spans() -> dict[str, Any] | None:
            found = {}
            for path, body in list(_Receiver.bodies):
                assert path == "/v1/traces"
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            found[span.name] = (span, service)
            return found if STAGES | {"POST /v1/models/{model}:predict"} <= set(found) else None

        found = server.wait_until(spans, "the spans at the receiver", 10)
        root, service = found["POST /v1/models/{model}:predict"]
        assert service == "kp-test" and root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == PARENT_ID
        assert all(found[name][0].parent_span_id == root.span_id for name in STAGES)
        assert server.stop() == 0
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_nothing_is_imported_when_tracing_is_off(tmp_path: Path) -> None:
    script = f"""
import asyncio, os, sys
for name in [n for n in os.environ if n.startswith("OTEL_")]:
    del os.environ[name]
from kingpost.config import load_config
from kingpost.runtime import Runtime
from kingpost.server.stack import build
bundle = {str(bundle_path("echo"))!r}
app, asgi = build(Runtime(bundle, load_config(bundle)))
assert asgi is app, asgi  # no layer at all: the bare app serves
assert not [m for m in sys.modules if m.startswith("opentelemetry")]
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.strip() == "ok", result.stderr


def test_tracing_asked_for_without_the_sdk_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "opentelemetry"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[1] / 'src'}", "OTEL_TRACES_EXPORTER": "otlp"}
    import os

    result = subprocess.run([sys.executable, "-m", "kingpost", "serve", str(bundle_path("echo")), "--port", "0"],
                            capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **env})
    assert result.returncode != 0
    assert result.stderr.strip() == ("error: the OTEL_* environment asks for traces, but OpenTelemetry is not "
                                     "installed: pip install 'kingpost[otel]'.")
