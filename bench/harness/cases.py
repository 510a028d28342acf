"""The benchmark cases. Adding one is one entry in CASES plus one bundle in bench/bundles/<name>/.

A case names its bundle (served unchanged by kingpost and by Truss), the JSON body every request
posts, and, for the servers that cannot read a bundle (bare, litserve), which of their hand-written
apps in bench/apps/ does the same work. A server with no app for a case is skipped for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import BUNDLES

# A small, realistic JSON body: a few rows of features plus an id.
FEATURES: dict[str, Any] = {
    "inputs": [[0.5, 1.25, -3.0, 4.75, 8.0, 0.0, 1.0, 2.5] for _ in range(4)],
    "id": "bench-0001",
}


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    payload: Any
    # Hand-written equivalents for servers that do not read bundles: server name -> app name
    # (bench/apps/bare.py HANDLERS, bench/apps/litserve_app.py APIS).
    apps: dict[str, str] = field(default_factory=dict)
    # The response every server must give before it is measured (None: the payload itself).
    expected: Any = None
    # Theoretical ceiling in req/s; each server is reported as a fraction of it.
    limit_rps: float | None = None
    limit_target: float | None = None  # kingpost must reach this fraction of limit_rps
    # Ratio targets: kingpost req/s divided by the named server's must be >= the value.
    targets: dict[str, float] = field(default_factory=dict)
    target_concurrency: int = 64  # where targets are judged (ratios are printed at every level)
    # Servers run when --servers is not given.
    servers: tuple[str, ...] = ("kingpost", "bare", "truss", "litserve")
    # Extra command-line arguments per server, e.g. {"kingpost": ("--workers", "2")}.
    server_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The bundle directory under bench/bundles/ ("" : the case's name), and per-server overrides,
    # e.g. {"kingpost-batched": "matmul-batched"}. Truss always serves the default bundle.
    bundle_dir: str = ""
    server_bundles: dict[str, str] = field(default_factory=dict)
    # Cores the servers may use (taskset -c list, e.g. "0,1"); None: the --server-core option.
    server_cores: str | None = None
    # Ratio lines between two servers: (numerator, denominator, target or None), e.g.
    # ("kingpost-batched", "kingpost", 5.0); the target is judged at target_concurrency.
    speedups: tuple[tuple[str, str, float | None], ...] = ()
    # What of an answer must equal `response` (None: all of it), for protocols whose answers carry
    # server-specific extras (V2's "parameters").
    answer_key: Callable[[Any], Any] | None = None
    # Streaming cases: chunks per answer (reported as chunks/s, CPU µs/chunk and first-chunk ms), the
    # answer checked as text (`expected`, the chunks joined) instead of JSON.
    chunks: int = 0
    # Extra request headers (wrk and the checks), e.g. {"Accept": "text/event-stream"}.
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def bundle(self) -> Path:
        return BUNDLES / (self.bundle_dir or self.name)

    def bundle_for(self, server: str) -> Path:
        return BUNDLES / self.server_bundles[server] if server in self.server_bundles else self.bundle

    @property
    def response(self) -> Any:
        return self.payload if self.expected is None else self.expected


# The batched case: 512 quarters in, a fixed 512x512 matrix of small integers (the bundles' and
# apps/litserve_app.py's weights()), so the logits are exact in float32 and computed here in pure
# Python to check every server's answer.
MATMUL_INPUT = [((k * 37) % 17 - 8) / 4 for k in range(512)]


def _matmul_expected(x: list[float]) -> dict[str, Any]:
    logits = [sum(x[i] * ((i * j * 7919 + i * 31 + j * 17) % 4093 % 7 - 3) for i in range(len(x))) for j in range(512)]
    label = max(range(512), key=logits.__getitem__)  # the first maximum, as numpy's argmax
    return {"label": label, "score": logits[label]}


# The v2 case: the same features as one FP32 tensor in the Open Inference Protocol's JSON.
V2_PAYLOAD: dict[str, Any] = {
    "id": FEATURES["id"],
    "inputs": [{"name": "input-0", "shape": [4, 8], "datatype": "FP32",
                "data": [x for row in FEATURES["inputs"] for x in row]}],
}


def _v2_outputs(answer: Any) -> Any:
    return [{k: o[k] for k in ("name", "datatype", "shape", "data")} for o in answer["outputs"]]


STREAM_N = 200  # chunks per streamed answer: "tok00000 ", "tok00001 ", ...
STREAM_TEXT = "".join(f"tok{i:05d} " for i in range(STREAM_N))
STREAM_SSE = "".join(f"data: tok{i:05d} \n\n" for i in range(STREAM_N))

WORKERS_N = 20_000  # predict's loop length: about 2 ms of one core

CASES: dict[str, Case] = {
    case.name: case
    for case in [
        Case(
            name="echo",
            description="predict returns its input, no pre/post: the server's own overhead",
            payload=FEATURES,
            apps={"bare": "echo", "litserve": "echo"},
            targets={"truss": 4.0, "litserve": 2.0, "bare": 0.75},
        ),
        Case(
            name="pipeline",
            description="preprocess sleeps 20 ms, predict sleeps 5 ms under the predict lock",
            payload=FEATURES,
            apps={"bare": "pipeline", "litserve": "pipeline", "litserve-sync": "pipeline-sync"},
            limit_rps=200.0,
            limit_target=0.95,
        ),
        Case(
            name="batched",
            description="x @ W (512x512 float32) + 4 ms per predict call (an accelerator's fixed cost), "
            "unbatched vs runtime.batching 32 / 5 ms",
            payload={"inputs": MATMUL_INPUT},
            expected=_matmul_expected(MATMUL_INPUT),
            apps={"litserve": "matmul", "litserve-batched": "matmul-batched"},
            bundle_dir="matmul",
            server_bundles={"kingpost-batched": "matmul-batched", "kingpost-base-batched": "matmul-batched"},
            servers=("kingpost", "kingpost-batched", "litserve", "litserve-batched"),
            speedups=(("kingpost-batched", "kingpost", 5.0), ("litserve-batched", "litserve", None)),
        ),
        Case(
            name="workers",
            description=f"pure-Python predict summing {WORKERS_N} squares (~2 ms holding the GIL), "
            "1 vs 2 server processes on cores 0,1",
            payload={"n": WORKERS_N},
            expected={"n": WORKERS_N, "sum": sum(i * i for i in range(WORKERS_N))},
            servers=("kingpost", "kingpost-w2"),
            server_cores="0,1",
            speedups=(("kingpost-w2", "kingpost", None),),
        ),
        Case(
            name="workers-echo",
            description="the echo bundle (the server's own overhead), 1 vs 2 server processes on cores 0,1",
            payload=FEATURES,
            bundle_dir="echo",
            servers=("kingpost", "kingpost-w2"),
            server_cores="0,1",
            speedups=(("kingpost-w2", "kingpost", None),),
        ),
        Case(
            name="v2",
            description="Open Inference Protocol: one FP32 [4, 8] tensor in JSON, decoded to numpy, echoed, "
            "encoded back as output-0",
            payload=V2_PAYLOAD,
            expected=[{"name": "output-0", "datatype": "FP32", "shape": [4, 8],
                       "data": V2_PAYLOAD["inputs"][0]["data"]}],
            answer_key=_v2_outputs,
            bundle_dir="echo",
            servers=("kingpost-v2", "mlserver"),
            speedups=(("kingpost-v2", "mlserver", 5.0),),
        ),
        Case(
            name="stream",
            description=f"a sync generator predict yielding {STREAM_N} short text chunks, no pause; "
            "chunked transfer encoding",
            payload={"n": STREAM_N},
            expected=STREAM_TEXT,
            chunks=STREAM_N,
            apps={"bare": "stream", "litserve": "stream"},
            target_concurrency=16,
            targets={"bare": 0.85},
        ),
        Case(
            name="stream-async",
            description=f"an async generator predict yielding {STREAM_N} short text chunks, no pause; chunked",
            payload={"n": STREAM_N},
            expected=STREAM_TEXT,
            chunks=STREAM_N,
            apps={"bare": "stream"},
            servers=("kingpost", "bare"),
            target_concurrency=16,
            targets={"bare": 0.85},
        ),
        Case(
            name="stream-sse",
            description=f"the stream case's sync generator, answered as Server-Sent Events ({STREAM_N} events)",
            payload={"n": STREAM_N},
            expected=STREAM_SSE,
            chunks=STREAM_N,
            headers={"Accept": "text/event-stream"},
            apps={"bare": "stream"},
            bundle_dir="stream",
            servers=("kingpost", "bare"),
            target_concurrency=16,
            targets={"bare": 0.85},
        ),
        # Planned: "ray" (kingpost on Ray Serve); for now bench/cases_ray.py runs on its own.
    ]
}
