"""Drive wrk: one thread, N connections, POST of the case's JSON body, percentiles from done()."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARK = "BENCH_JSON "

LUA = """\
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "bytes": %%d, ' ..
    '"errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}, ' ..
    '"latency_us": {"p50": %%.1f, "p90": %%.1f, "p99": %%.1f, "max": %%.1f, "mean": %%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # socket errors plus non-2xx/3xx answers
    p50_ms: float
    p99_ms: float
    raw: dict[str, Any]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def write_script(directory: Path, name: str, payload: Any, headers: dict[str, str] | None = None) -> Path:
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    body = json.dumps(payload, separators=(",", ":"))
    if "]==]" in body:
        raise ValueError(f"payload of {name} contains ']==]', which ends the lua long string")
    path = directory / f"{name}.lua"
    path.write_text(LUA % {"body": body, "mark": MARK, "headers": extra})
    return path


def run(url: str, script: Path, connections: int, seconds: int, prefix: list[str]) -> WrkResult:
    """prefix pins wrk to its core (process.pinned)."""
    argv = [
        *prefix,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    raw = json.loads(line[len(MARK) :])
    lat = raw["latency_us"]
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=sum(raw["errors"].values()),
        p50_ms=lat["p50"] / 1000,
        p99_ms=lat["p99"] / 1000,
        raw=raw,
    )
