#!/usr/bin/env python3
"""Benchmark kingpost against a bare ASGI app, Truss's server and LitServe on the same bundles.

    python bench/run.py --setup                      # build bench/.venvs and Truss contexts once
    python bench/run.py [--quick] [--cases echo,pipeline] [--servers kingpost,bare,truss,litserve]

Every server runs pinned to core 0 and wrk to core 1, on loopback inside a private network
namespace (`unshare -rn`, so servers that insist on 0.0.0.0 stay private). Rounds are interleaved
across servers; each figure is the median of the rounds. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import report, session, truss_context, wrk
from harness.cases import CASES, Case
from harness.paths import DEV_PYTHON, REPO, RESULTS, venv_python
from harness.process import pinned
from harness.servers import DEFAULT_SERVERS, SERVERS

IN_NETNS_ENV = "KINGPOST_BENCH_IN_NETNS"
log = session.log


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", action="store_true", help="build the venvs and Truss contexts, then exit")
    p.add_argument("--list", action="store_true", help="list cases and servers, then exit")
    p.add_argument("--quick", action="store_true", help="2 s per point instead of 5 (3 rounds still)")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated (default: all)")
    p.add_argument(
        "--servers", default=None, help=f"comma-separated (default: each case's list, {','.join(DEFAULT_SERVERS)})"
    )
    p.add_argument("--concurrency", default="1,16,64", help="wrk -c levels (default 1,16,64)")
    p.add_argument("--duration", type=int, default=None, help="seconds per point (5; --quick 2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per point, median reported (3)")
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--wrk-core", type=int, default=1)
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice level for the servers and wrk, e.g. -10 on a shared machine (needs root)",
    )
    p.add_argument(
        "--no-netns", action="store_true", help="run on the host's loopback (servers that bind 0.0.0.0 are skipped)"
    )
    p.add_argument(
        "--no-freeze",
        action="store_true",
        help="leave idle servers running during others' rounds (default: SIGSTOP them)",
    )
    p.add_argument("--json", type=Path, default=None, help="results file (default bench/results/...)")
    args = p.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 5)
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.case_list if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if args.servers is not None:
        args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
        unknown = [s for s in args.server_list if s not in SERVERS]
        if unknown:
            p.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    else:
        args.server_list = None
    args.levels = [int(c) for c in args.concurrency.split(",")]
    if args.nice < 0 and os.geteuid() != 0:
        p.error("--nice below 0 needs root")
    if args.rounds < 1 or args.duration < 1:
        p.error("--rounds and --duration must be >= 1")
    return args


def prepare_truss(cases: list[Case]) -> None:
    """Outside the namespace: (re)build stale Truss contexts so the run itself needs no network."""
    if not venv_python("truss").exists():
        return
    for case in cases:
        if (case.bundle / "config.yaml").is_file() and not truss_context.is_fresh(case):
            log(f"[prep] building the Truss context for {case.name}")
            truss_context.build(case)
            if venv_python("truss-server").exists():
                truss_context.install_requirements(case)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "cpu": _cpu_model()}
    probes = [
        (DEV_PYTHON, ["uvicorn", "uvloop", "httptools", "orjson", "kingpost"]),
        (venv_python("truss"), ["truss"]),
        (venv_python("truss-server"), ["fastapi", "uvicorn"]),
        (venv_python("litserve"), ["litserve", "fastapi", "uvicorn"]),
    ]
    for python, names in probes:
        if not python.exists():
            continue
        code = (
            "import importlib.metadata as m, sys\nfor n in sys.argv[1:]:\n"
            "    try: print(n, m.version(n))\n    except Exception: pass"
        )
        out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True).stdout
        venv = python.parent.parent.name
        for line in out.splitlines():
            name, version = line.split()
            found[f"{venv}:{name}"] = version
    wrk_line = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    found["wrk"] = wrk_line[0] if wrk_line else "?"
    return found


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def bench(args) -> int:
    if shutil.which("wrk") is None:
        log("wrk is not on PATH: install it (Debian: apt-get install wrk)")
        return 2
    os.sched_setaffinity(0, {args.wrk_core})  # keep the harness itself off the server's core
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    logdir = RESULTS / "logs" / stamp
    t_start = time.monotonic()
    all_rounds: list[report.Round] = []
    skipped: dict[str, str] = {}
    ran: dict[str, list[str]] = {}
    first: dict[str, dict[str, list[float]]] = {}
    settings = session.Settings(
        levels=args.levels,
        rounds=args.rounds,
        duration=args.duration,
        server_core=args.server_core,
        server_prefix=pinned(args.server_core, args.nice),
        wrk_prefix=pinned(args.wrk_core, args.nice),
        freeze=not args.no_freeze,
        in_netns=os.environ.get(IN_NETNS_ENV) == "1",
        nice=args.nice,
        wrk_core=args.wrk_core,
    )
    with tempfile.TemporaryDirectory(prefix="kingpost-bench-") as tmp:
        for case in (CASES[c] for c in args.case_list):
            names = args.server_list or list(case.servers)
            script = wrk.write_script(Path(tmp), case.name, case.payload, case.headers)
            runs = session.start(case, names, settings, logdir, skipped)
            try:
                if runs:
                    all_rounds += session.measure(case, runs, settings, script, skipped)
                    if case.chunks:
                        first[case.name] = session.first_chunks(case, runs, settings)
                    ran[case.name] = list(dict.fromkeys(r.server for r in all_rounds if r.case == case.name))
            finally:
                for run in runs:
                    run.proc.stop()
    summaries = report.summarize(all_rounds)
    print()
    for name in args.case_list:
        case = CASES[name]
        if name not in ran:
            print(f"== {name}: no server could run it ==\n")
            continue
        print(report.table(case, summaries, ran[name], args.rounds))
        print("\n".join(report.ratio_lines(case, summaries) + report.stream_lines(case, summaries,
                                                                                  first.get(name, {}))))
        print()
    for key, reason in skipped.items():
        lines = reason.strip().splitlines()
        print(f"skipped {key}: {lines[0]}" + (f" ... {lines[-1].strip()}" if len(lines) > 1 else ""))
    notes = {name: SERVERS[name].note for names in ran.values() for name in names}
    for name, note in notes.items():
        print(f"{name}: {note}")
    meta = {
        "started": stamp,
        "elapsed_s": round(time.monotonic() - t_start, 1),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "concurrency": args.levels,
        "server_core": args.server_core,
        "case_server_cores": {c: CASES[c].server_cores for c in args.case_list if CASES[c].server_cores},
        "nice": args.nice,
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        "wrk_core": args.wrk_core,
        "netns": os.environ.get(IN_NETNS_ENV) == "1",
        "skipped": skipped,
        "first_chunk_ms": first,
        "servers": notes,
        "versions": versions(),
        "git": _git_head(),
        "logs": str(logdir),
    }
    out = args.json or RESULTS / f"bench-{stamp}.json"
    report.write_json(out, meta, all_rounds, summaries)
    print(f"\nresults: {out}  (server logs: {logdir})  elapsed {meta['elapsed_s']:.0f} s")
    return 0


def _git_head() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return proc.stdout.strip() or "none"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.list:
        for case in CASES.values():
            print(f"case {case.name:<10} {case.description}  [servers: {', '.join(case.servers)}]")
        for server in SERVERS.values():
            print(f"server {server.name:<17} {server.note}")
        return 0
    cases = [CASES[c] for c in args.case_list]
    if args.setup:
        from harness.setup_envs import setup

        setup(cases)
        return 0
    if args.no_netns or os.environ.get(IN_NETNS_ENV) == "1":
        if os.environ.get(IN_NETNS_ENV) == "1":
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        try:
            return bench(args)
        except KeyboardInterrupt:
            log("interrupted; the servers were stopped")
            return 130
    if shutil.which("unshare") is None:
        log("unshare (util-linux) is not on PATH; rerun with --no-netns")
        return 2
    prepare_truss(cases)
    os.environ[IN_NETNS_ENV] = "1"
    # As root, a plain network namespace keeps the right to raise priority (--nice); otherwise map
    # ourselves to root in a new user namespace, which is enough for `ip link set lo up`.
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    argv_in = [*unshare, sys.executable, str(Path(__file__).resolve()), *argv]
    child = subprocess.Popen(argv_in)
    # Ctrl-C reaches the child too (same process group); let it stop its servers and exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
