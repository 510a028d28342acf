#!/usr/bin/env python3
"""Where a streamed chunk's time goes: kingpost's ASGI app driven in process, no sockets.

    PYTHONPATH=src .venv/bin/python bench/stream_profile.py [--bundle stream|stream-async] [--sse]
        [--chunks 200] [--requests 300] [--concurrency 1] [--profile]

Drives ``App`` (as ``kingpost serve`` builds it, access log on) and a raw ASGI app sending the same
chunks with the same ``send`` (one that only counts bytes, as uvicorn's would before the socket), on
uvloop, and prints CPU µs per chunk for both (process time, so the predict thread counts) and the
difference. ``--profile`` adds a cProfile of kingpost's run (the loop thread's view; the predict
thread's part shows up as waits). The socket write every server pays is absent here, so the ratio is
lower than over HTTP; the difference per chunk is what kingpost adds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import orjson

BUNDLES = Path(__file__).resolve().parent / "bundles"
sys.path.insert(0, str(BUNDLES.parent / "apps"))
from bare import stream_app  # noqa: E402 - the stream cases' raw app, the same one bench/run.py serves

PATH = "/v1/models/model:predict"


class Cycle:
    """What uvicorn's receive is bound to: kingpost reads ``disconnected`` from it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.disconnected = False

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self.body, "more_body": False}


class Sink:
    def __init__(self) -> None:
        self.bytes = 0
        self.messages = 0
        self.first: list[float] = []
        self._start = 0.0

    def mark(self) -> None:
        self._start = time.perf_counter()

    async def send(self, message: dict[str, Any]) -> None:
        self.messages += 1
        body = message.get("body")
        if body:
            if self._start:
                self.first.append(time.perf_counter() - self._start)
                self._start = 0.0
            self.bytes += len(body)


async def drive(app: Any, requests: int, concurrency: int, chunks: int, sse: bool) -> tuple[float, float, Sink]:
    headers = [(b"content-type", b"application/json")]
    if sse:
        headers.append((b"accept", b"text/event-stream"))
    scope = {"type": "http", "method": "POST", "path": PATH, "headers": headers, "root_path": ""}
    body = orjson.dumps({"n": chunks})
    sink = Sink()

    async def one() -> None:
        cycle = Cycle(body)
        if concurrency == 1:
            sink.mark()
        await app(scope, cycle.receive, sink.send)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    cpu, wall = time.process_time(), time.perf_counter()
    per = requests // concurrency
    await asyncio.gather(*(worker(per) for _ in range(concurrency)))
    return time.process_time() - cpu, time.perf_counter() - wall, sink


async def main_async(args: argparse.Namespace) -> None:
    from kingpost.runtime import Runtime
    from kingpost.server.app import App

    runtime = Runtime.from_dir(BUNDLES / args.bundle if (BUNDLES / args.bundle).is_dir() else Path(args.bundle))
    await runtime.start()
    app = App(runtime, on_uvicorn=True)
    scope = {"type": "http", "method": "POST", "path": PATH, "headers": [], "root_path": ""}
    await app._predict_route(scope, Cycle(orjson.dumps({"n": 1})).receive, Sink().send, {"model": "model"})
    raw = stream_app()
    total = args.requests * args.chunks
    for target in (app, raw):
        await drive(target, max(args.concurrency, args.requests // 10), args.concurrency, args.chunks, args.sse)
    results = {}
    for _round in range(args.rounds):
        for name, target in (("kingpost", app), ("raw", raw)):
            cpu, wall, sink = await drive(target, args.requests, args.concurrency, args.chunks, args.sse)
            first = sorted(sink.first)[len(sink.first) // 2] * 1e6 if sink.first else float("nan")
            results.setdefault(name, []).append((cpu / total * 1e6, total / wall, first))
    for name, rows in results.items():
        cpu = sorted(r[0] for r in rows)
        rate = sorted(r[1] for r in rows)
        first = sorted(r[2] for r in rows)
        print(f"{name:9s} CPU µs/chunk {cpu[len(cpu) // 2]:6.2f} (spread {cpu[0]:.2f}-{cpu[-1]:.2f})  "
              f"chunks/s {rate[len(rate) // 2]:9.0f}  first chunk µs {first[len(first) // 2]:7.1f}")
    k = sorted(r[0] for r in results["kingpost"])[args.rounds // 2]
    r = sorted(r[0] for r in results["raw"])[args.rounds // 2]
    print(f"kingpost adds {k - r:.2f} µs per chunk in process ({args.bundle}, {'SSE' if args.sse else 'chunked'}, "
          f"c={args.concurrency})")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        await drive(app, args.requests, args.concurrency, args.chunks, args.sse)
        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(18)
    await runtime.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="stream", help="stream, stream-async or a bundle directory")
    p.add_argument("--sse", action="store_true")
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    import uvloop

    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
