#!/usr/bin/env python3
"""What one more `kingpost serve` worker costs and how evenly the workers share the load.

    python bench/workers_probe.py [--bundle workers|echo] [--workers 2] [--connections 64] [--seconds 5]

Starts `kingpost serve BUNDLE --workers N` on a free loopback port (all cores), waits until it is
ready, then prints each process's memory (RSS, and PSS: its share of pages the processes have in
common) and, after a wrk run (-t1 -cCONNECTIONS, the bench's JSON body), each worker's share of the
CPU the workers used. Several workers accept on one shared listening socket (the supervisor's, bound
once), so how the connections spread over them is the kernel's choice: wrk opens its connections
once and keeps them, so an uneven spread at connect time stays for the whole run.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import wrk
from harness.cases import CASES
from harness.paths import DEV_PYTHON, REPO
from harness.process import ServerProcess, tree_cpu_seconds
from harness.servers import Launch


def _kb(pid: int, path: str, field: str) -> int:
    for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(") ")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="workers", choices=["workers", "echo"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--seconds", type=int, default=5)
    args = p.parse_args()
    case = CASES[args.bundle]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [str(DEV_PYTHON), "-m", "kingpost", "serve", str(case.bundle), "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(args.workers)]
    with tempfile.TemporaryDirectory() as tmp:
        proc = ServerProcess("kingpost", Launch(argv, cwd=REPO), Path(tmp) / "server.log", [])
        try:
            base = f"http://127.0.0.1:{port}"
            proc.wait_ready(base + "/v1/models/model", timeout=120)
            time.sleep(1)
            root = proc.pid
            tree = [root, *_children(root)]
            workers = [pid for pid in tree if pid != root and _kb(pid, "status", "VmRSS") > 20_000] or [root]
            print(f"kingpost serve {case.bundle} --workers {args.workers}: processes {tree}")
            for pid in tree:
                rss, pss = _kb(pid, "status", "VmRSS"), _kb(pid, "smaps_rollup", "Pss")
                role = ("server" if workers == [root] else "supervisor") if pid == root else (
                    "worker" if pid in workers else "helper: multiprocessing's resource tracker")
                print(f"  pid {pid} ({role}): RSS {rss / 1024:.1f} MiB, PSS {pss / 1024:.1f} MiB")
            script = wrk.write_script(Path(tmp), case.name, case.payload)
            before = {pid: _cpu(pid) for pid in workers}
            total0 = tree_cpu_seconds(root)
            result = wrk.run(base + "/v1/models/model:predict", script, args.connections, args.seconds, [])
            used = {pid: _cpu(pid) - before[pid] for pid in workers}
            total = tree_cpu_seconds(root) - total0
            share = ", ".join(f"{pid} {100 * cpu / max(sum(used.values()), 1e-9):.0f}%" for pid, cpu in used.items())
            print(f"wrk -c{args.connections} {args.seconds} s: {result.rps:.0f} req/s, p50 {result.p50_ms:.1f} ms, "
                  f"server CPU {total * 1e6 / max(result.requests, 1):.0f} µs/req, {total / result.seconds:.2f} cores; "
                  f"workers' CPU shares: {share}")
        finally:
            proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
