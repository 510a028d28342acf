"""The cost of each production layer (API keys, CORS, JSON logs, tracing) on an echo predict, in process.

Drives kingpost's ASGI app directly (no sockets, no wrk), the way uvicorn calls it, and prints the
CPU microseconds per request (process time, all threads: span export and log formatting included)
for each configuration, as the median and the minimum of interleaved rounds. "off" is what
`kingpost serve` runs without any of the features: the bare App, built directly, so the same
script run with PYTHONPATH at a tree from before these features compares the two.

    PYTHONPATH=src python bench/asgi_layers.py [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "tests" / "bundles" / "echo"
BODY = b'{"inputs": [[1, 2, 3, 4]]}'


class Cycle:
    """What the app reads from uvicorn's request cycle: ``disconnected``, and ``receive``."""

    disconnected = False
    response_complete = False

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    pass


def build(feature: str) -> tuple[Any, list[tuple[bytes, bytes]]]:
    from kingpost.config import load_config
    from kingpost.runtime import Runtime

    if feature == "off":  # what `kingpost serve` runs with no feature on (works on a tree without stack.py too)
        from kingpost.server.app import App

        runtime = Runtime(BUNDLE, load_config(BUNDLE))
        app = App(runtime, on_uvicorn=True)
        app.access_log._stream = io.StringIO()  # type: ignore[union-attr]
        return (app, runtime, None), []
    from kingpost.server.stack import Settings
    from kingpost.server.stack import build as build_stack

    headers: list[tuple[bytes, bytes]] = []
    settings = Settings()
    provider = None
    if feature in ("keys", "all"):
        settings = Settings(api_keys=("k-0123456789abcdef",), log_format=settings.log_format)
        headers.append((b"authorization", b"Bearer k-0123456789abcdef"))
    if feature in ("cors", "all"):
        settings = Settings(api_keys=settings.api_keys, cors={"allow_origins": ("https://app.example",)})
        headers.append((b"origin", b"https://app.example"))
    if feature in ("json", "all"):
        settings = Settings(api_keys=settings.api_keys, cors=settings.cors, log_format="json")
    if feature in ("tracing", "all"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Discard(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=1 << 20))
    runtime = Runtime(BUNDLE, load_config(BUNDLE))
    kingpost_app, app = build_stack(runtime, settings, on_uvicorn=True, tracer_provider=provider)
    if kingpost_app.access_log is not None:
        kingpost_app.access_log._stream = io.StringIO()  # the text access line: formatted, written nowhere
    logs = app
    while logs is not None and type(logs).__name__ != "RequestLog":
        logs = getattr(logs, "app", None)
    if logs is not None:
        logs._stream = io.StringIO()  # formatted as on a server, written nowhere
    return (app, runtime, logs), headers


async def measure(app: Any, runtime: Any, logs: Any, headers: list[tuple[bytes, bytes]], n: int) -> float:
    base = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode()), *headers]
    cycle = Cycle()
    receive = cycle.receive
    start = time.process_time()
    for i in range(n):
        scope = {"type": "http", "method": "POST", "path": "/v1/models/model:predict", "root_path": "",
                 "query_string": b"", "headers": base, "client": ("127.0.0.1", 50000)}
        await app(scope, receive, _send)
        if i % 256 == 255:
            await asyncio.sleep(0)  # let scheduled work (the log flush) run, as a server's loop would
    if logs is not None:
        logs.flush()
    return (time.process_time() - start) / n * 1e6


async def main(features: list[str], n: int, rounds: int) -> dict[str, tuple[float, float]]:
    built = {}
    for feature in features:
        (app, runtime, logs), headers = build(feature)
        await runtime.start()
        await measure(app, runtime, logs, headers, 2000)  # warm-up: inline predict, caches
        built[feature] = (app, runtime, logs, headers)
    results: dict[str, list[float]] = {f: [] for f in features}
    for r in range(rounds):
        order = features[r % len(features):] + features[:r % len(features)]
        for feature in order:
            app, runtime, logs, headers = built[feature]
            results[feature].append(await measure(app, runtime, logs, headers, n))
    for _, runtime, _, _ in built.values():
        await runtime.stop()
    return {f: (statistics.median(v), min(v)) for f, v in results.items()}


async def _noop_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"[1]"})


def layers_only(n: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Each layer around an app that answers at once: the layer's own cost, without the App's noise.

    "keys" is ApiKeys.allows() on a Bearer header (what the keyed predict shortcut adds);
    "tracing" is the request span alone (the four stage spans cost about as much again each).
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from kingpost.server.auth import ApiKeys
    from kingpost.server.cors import Cors, CorsPolicy
    from kingpost.server.logs import RequestLog
    from kingpost.server.routes import Route, Router

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class FakeApp:  # what Tracing reads from kingpost's App
        router = Router([Route("/v1/models/{model}:predict", _noop_app, ("POST",), "predict")])
        models = None
        runtime = type("R", (), {"name": "echo", "predict": None})()

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=1 << 20))
    from kingpost.server.tracing import Tracing

    keys = ApiKeys(["k-0123456789abcdef"])
    logs = RequestLog(_noop_app, FakeApp.router, "echo", stream=io.StringIO())
    apps = {"none": (_noop_app, []),
            "cors": (Cors(_noop_app, CorsPolicy(allow_origins=("https://app.example",))),
                     [(b"origin", b"https://app.example")]),
            "json": (logs, []),
            "tracing": (Tracing(_noop_app, FakeApp(), provider), [])}  # type: ignore[arg-type]
    base = [(b"content-type", b"application/json"), (b"content-length", b"3")]
    bearer = [*base, (b"authorization", b"Bearer k-0123456789abcdef")]

    async def drive(app: Any, headers: list[tuple[bytes, bytes]]) -> float:
        receive = Cycle().receive
        start = time.process_time()
        for i in range(n):
            await app({"type": "http", "method": "POST", "path": "/v1/models/model:predict",
                       "headers": [*base, *headers], "client": ("127.0.0.1", 1)}, receive, _send)
            if i % 256 == 255:
                await asyncio.sleep(0)
        logs.flush()
        return (time.process_time() - start) / n * 1e6

    def keys_cost() -> float:
        scope = {"headers": bearer}
        start = time.process_time()
        for _ in range(n):
            keys.allows(scope)
        return (time.process_time() - start) / n * 1e6

    results: dict[str, list[float]] = {name: [] for name in [*apps, "keys"]}

    async def run() -> None:
        for _ in range(rounds):
            for name, (app, headers) in apps.items():
                results[name].append(await drive(app, headers))
            results["keys"].append(keys_cost())

    asyncio.run(run())
    return {name: (statistics.median(v), min(v)) for name, v in results.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--features", default="off,keys,cors,json,tracing,all")
    parser.add_argument("--layers-only", action="store_true",
                        help="each layer around an app that answers at once (its own cost, less noise)")
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)
    os.environ.pop("KINGPOST_API_KEY", None)
    if args.layers_only:
        found = layers_only(args.requests, args.rounds)
        print("layer     median us/req   min us/req   (over the bare app: median, min)")
        for name, (med, low) in found.items():
            bare_med, bare_min = found["none"]
            over = "" if name in ("none", "keys") else f"  ({med - bare_med:+.2f}, {low - bare_min:+.2f})"
            print(f"{name:8s} {med:12.2f} {low:12.2f}{over}")
        sys.exit(0)
    out = asyncio.run(main(args.features.split(","), args.requests, args.rounds))
    base = out.get("off")
    print("feature   median us/req   min us/req   (median - off, min - off)")
    for feature, (med, low) in out.items():
        extra = f"  ({med - base[0]:+.2f}, {low - base[1]:+.2f})" if base is not None and feature != "off" else ""
        print(f"{feature:8s} {med:12.2f} {low:12.2f}{extra}")
