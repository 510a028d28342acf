"""One case's session: start its servers, check them, measure interleaved rounds, stop them."""

from __future__ import annotations

import contextlib
import resource
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import wrk
from .cases import Case
from .process import FirstChunkProbe, ServerProcess, core_busy_seconds, core_list, pinned, post_json
from .report import Round
from .servers import SERVERS, Server


@dataclass
class Settings:
    levels: list[int]
    rounds: int
    duration: int
    server_core: int
    server_prefix: list[str]  # taskset (and nice) for the servers
    wrk_prefix: list[str]  # the same for wrk
    freeze: bool  # SIGSTOP the servers not being measured
    in_netns: bool
    nice: int = 0
    wrk_core: int = 1

    def server_cores(self, case: Case) -> list[int]:
        """The cores case's servers run on: Case.server_cores, else --server-core."""
        return core_list(case.server_cores) if case.server_cores else [self.server_core]

    def prefix_for(self, case: Case) -> list[str]:
        return pinned(case.server_cores, self.nice) if case.server_cores else self.server_prefix


@dataclass
class Running:
    server: Server
    base: str  # http://127.0.0.1:PORT
    proc: ServerProcess


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(case: Case, names: list[str], settings: Settings, logdir: Path, skipped: dict[str, str]) -> list[Running]:
    """Start every server that can run case; keep those that get ready and answer correctly."""
    started = []
    for name in names:
        server = SERVERS[name]
        reason = server.unavailable(case, settings.in_netns)
        if reason:
            skipped[f"{case.name}/{name}"] = reason
            log(f"[{case.name}] skip {name}: {reason}")
            continue
        port = _free_port()
        proc = ServerProcess(
            name, server.launch(case, port), logdir / f"{case.name}-{name}.log", settings.prefix_for(case)
        )
        started.append(Running(server, f"http://127.0.0.1:{port}", proc))
    ready = []
    for run in started:
        try:
            t0 = time.monotonic()
            run.proc.wait_ready(run.base + run.server.ready_path, timeout=180)
            answer = post_json(run.base + run.server.predict_path, case.payload, headers=case.headers,
                               text=bool(case.chunks))
            if (answer if case.answer_key is None else case.answer_key(answer)) != case.response:
                raise RuntimeError(f"answered {str(answer)[:200]!r}, expected the case's response")
            log(f"[{case.name}] {run.server.name} ready in {time.monotonic() - t0:.1f} s (pid {run.proc.pid})")
            ready.append(run)
        except Exception as exc:  # a broken server is reported and skipped; the run goes on
            skipped[f"{case.name}/{run.server.name}"] = f"failed to start: {exc}"
            log(f"[{case.name}] skip {run.server.name}: {exc}")
            run.proc.stop()
    return ready


@contextlib.contextmanager
def _running(proc: ServerProcess, freeze: bool) -> Iterator[None]:
    if freeze:
        proc.resume()
        time.sleep(0.1)  # let timers that fired while paused run before the clock starts
    try:
        yield
    finally:
        if freeze:
            proc.pause()


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cores_busy_seconds(cores: list[int]) -> float:
    return sum(core_busy_seconds(core) for core in cores)


def _one_round(case: Case, run: Running, conc: int, index: int, settings: Settings, script: Path) -> Round:
    cores = settings.server_cores(case)
    with _running(run.proc, settings.freeze):
        cpu0, core0, wrk0 = run.proc.cpu_seconds(), _cores_busy_seconds(cores), _children_cpu_seconds()
        res = wrk.run(run.base + run.server.predict_path, script, conc, settings.duration, settings.wrk_prefix)
        cpu = run.proc.cpu_seconds() - cpu0
        busy = _cores_busy_seconds(cores) - core0
        # wrk (the only child reaped meanwhile) is not "other" work when it shares the servers' cores.
        wrk_cpu = _children_cpu_seconds() - wrk0 if settings.wrk_core in cores else 0.0
        other = max(0.0, busy - cpu - wrk_cpu)
    other_pct = 100 * other / (res.seconds * len(cores)) if res.seconds else 0.0
    cpu_us = cpu * 1e6 / res.requests if res.requests else float("nan")
    log(
        f"[{case.name}] c={conc:<3} round {index}/{settings.rounds} {run.server.name:<15}"
        f"{res.rps:9.0f} req/s  p50 {res.p50_ms:7.2f} ms  p99 {res.p99_ms:7.2f} ms"
        f"  {cpu_us:7.0f} µs/req  other {other_pct:3.0f}%" + (f"  errors {res.errors}" if res.errors else "")
    )
    return Round(
        case.name, run.server.name, conc, index, res.requests, res.errors, res.rps, res.p50_ms, res.p99_ms,
        cpu_us, other_pct,
    )  # fmt: skip


def measure(case: Case, runs: list[Running], settings: Settings, script: Path, skipped: dict[str, str]) -> list[Round]:
    """Interleaved rounds (each round starts with a different server); a server whose process or wrk
    fails mid-run is reported and dropped, the others go on."""
    rounds: list[Round] = []
    runs = list(runs)

    def drop(run: Running, exc: Exception) -> None:
        skipped[f"{case.name}/{run.server.name}"] = f"failed during the run: {exc}\n{run.proc.log_tail()}"
        log(f"[{case.name}] dropping {run.server.name}: {exc}")
        runs.remove(run)

    for run in runs if settings.freeze else ():
        run.proc.pause()
    for run in list(runs):  # warm up: lazy imports, caches, thread pools
        try:
            with _running(run.proc, settings.freeze):
                wrk.run(run.base + run.server.predict_path, script, 16, 1, settings.wrk_prefix)
        except RuntimeError as exc:
            drop(run, exc)
    for conc in settings.levels:
        for r in range(settings.rounds):
            shift = r % max(len(runs), 1)
            for run in runs[shift:] + runs[:shift]:
                try:
                    rounds.append(_one_round(case, run, conc, r + 1, settings, script))
                except RuntimeError as exc:
                    drop(run, exc)
    return rounds


FIRST_CHUNK_REQUESTS = 200


def first_chunks(case: Case, runs: list[Running], settings: Settings) -> dict[str, list[float]]:
    """Streaming cases: ms to the first body byte on an idle server, one request at a time, the servers
    taking turns request by request (so a busy moment of the machine falls on all of them), in
    `settings.rounds` rounds of FIRST_CHUNK_REQUESTS each; a median per round."""
    out: dict[str, list[float]] = {}
    for run in runs if settings.freeze else ():
        run.proc.resume()
    probes: dict[str, FirstChunkProbe] = {}
    try:
        for run in runs:
            probes[run.server.name] = FirstChunkProbe(run.base + run.server.predict_path, case.payload, case.headers)
        for r in range(settings.rounds):
            times: dict[str, list[float]] = {}
            for _ in range(FIRST_CHUNK_REQUESTS):
                for name, probe in probes.items():
                    times.setdefault(name, []).append(probe.one())
            for name, found in times.items():
                median = statistics.median(found)
                out.setdefault(name, []).append(median)
                log(f"[{case.name}] first chunk round {r + 1}/{settings.rounds} {name:<15} "
                    f"median {median:.3f} ms, p90 {sorted(found)[int(len(found) * 0.9)]:.3f} ms")
    except (OSError, RuntimeError) as exc:
        log(f"[{case.name}] first chunk: failed: {exc}")
    finally:
        for probe in probes.values():
            probe.close()
        for run in runs if settings.freeze else ():
            run.proc.pause()
    return out
