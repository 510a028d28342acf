#!/usr/bin/env python3
"""Async jobs on the echo bundle: submit throughput, and what a job adds over a synchronous request.

    python bench/jobs.py [--submits 2000] [--concurrency 32] [--latency-rounds 200] [--database URL]

Needs the dev venv (httpx). Starts `kingpost serve bench/bundles/echo --jobs-dir <temp>` (or
``--jobs-database``) on a free loopback port, then:

1. **submit throughput**: ``--submits`` POSTs to ``:async_predict`` from ``--concurrency`` threads
   sharing one keep-alive httpx client; submits/s is the count over the wall time. Each answer is
   a 201, and each job is committed (SQLite WAL) before it is answered. The jobs run meanwhile.
2. **added latency**, one request at a time: the median of ``--latency-rounds`` synchronous predicts,
   then the median time from a submit until a GET of the job first shows ``succeeded`` (polling
   every 1 ms), and their difference. A client that polls less often, or waits for the webhook,
   sees its own interval on top.

Prints one line per figure. The machine is shared: run it briefly, and compare only figures of the
same run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
SUBMIT = "/v1/models/model:async_predict"
PAYLOAD = {"inputs": [[0.5, 1.25, -3.0, 4.75] for _ in range(4)], "id": "bench-0001"}


def start(store: list[str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    err = Path(tempfile.mkstemp(prefix="kingpost-bench-jobs-", suffix=".stderr")[1])
    proc = subprocess.Popen([sys.executable, "-m", "kingpost", "serve", str(HERE / "bundles" / "echo"), "--port", "0",
                             "--no-access-log", *store], stderr=err.open("wb"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"on (http://\S+?) \(", err.read_text())
        if found:
            url = found.group(1)
            try:
                if httpx.get(url + "/v1/models/model").status_code == 200:
                    return proc, url, err
            except httpx.HTTPError:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the server did not come up:\n{err.read_text()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submits", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-rounds", type=int, default=200)
    parser.add_argument("--database", default=None, help="a postgresql:// URL instead of SQLite in a temp dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kingpost-bench-jobs-") as tmp:
        store = ["--jobs-database", args.database] if args.database else ["--jobs-dir", os.path.join(tmp, "jobs")]
        proc, url, err = start(store)
        try:
            with httpx.Client(base_url=url, timeout=30,
                              limits=httpx.Limits(max_connections=args.concurrency + 4)) as http:
                for _ in range(50):  # warm up both paths
                    http.post("/v1/models/model:predict", json=PAYLOAD)
                    http.post(SUBMIT, json={"model_input": PAYLOAD})

                def one(_: int) -> int:
                    return http.post(SUBMIT, json={"model_input": PAYLOAD}).status_code

                began = time.perf_counter()
                with ThreadPoolExecutor(args.concurrency) as pool:
                    statuses = list(pool.map(one, range(args.submits)))
                wall = time.perf_counter() - began
                assert set(statuses) == {201}, set(statuses)
                print(f"submit throughput: {args.submits / wall:.0f} submits/s "
                      f"({args.submits} at concurrency {args.concurrency}, {wall:.2f} s)")
                while http.get("/v1/jobs", params={"status": "queued", "limit": 1}).json()["jobs"]:
                    time.sleep(0.05)  # let the queue drain before timing single jobs

                sync = []
                for _ in range(args.latency_rounds):
                    t = time.perf_counter()
                    http.post("/v1/models/model:predict", json=PAYLOAD).raise_for_status()
                    sync.append(time.perf_counter() - t)
                jobs = []
                for _ in range(args.latency_rounds):
                    t = time.perf_counter()
                    job_id = http.post(SUBMIT, json={"model_input": PAYLOAD}).json()["request_id"]
                    while http.get(f"/v1/jobs/{job_id}").json()["status"] != "succeeded":
                        time.sleep(0.001)
                    jobs.append(time.perf_counter() - t)
            s, j = statistics.median(sync), statistics.median(jobs)
            print(f"sync predict: median {s * 1000:.2f} ms; job submit-to-succeeded: median {j * 1000:.2f} ms; "
                  f"added by a job: {(j - s) * 1000:.2f} ms ({args.latency_rounds} rounds each, one at a time)")
        finally:
            proc.terminate()
            proc.wait(30)
            err.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
