"""Medians over rounds, the side-by-side tables, the ratio lines, and the JSON record."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cases import Case

SUBJECT = "kingpost"  # every server named kingpost* gets ratio lines against the others
NOISY_PCT = 10


@dataclass(frozen=True)
class Round:
    case: str
    server: str
    concurrency: int
    round: int
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float
    other_pct: float  # share of the server's core used by other processes during the round


@dataclass(frozen=True)
class Summary:
    case: str
    server: str
    concurrency: int
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float
    errors: int
    other_pct: float


def summarize(rounds: list[Round]) -> list[Summary]:
    groups: dict[tuple[str, str, int], list[Round]] = {}
    for r in rounds:
        groups.setdefault((r.case, r.server, r.concurrency), []).append(r)
    return [
        Summary(
            case,
            server,
            conc,
            len(rs),
            statistics.median(r.rps for r in rs),
            statistics.median(r.p50_ms for r in rs),
            statistics.median(r.p99_ms for r in rs),
            statistics.median(r.cpu_us_per_req for r in rs),
            sum(r.errors for r in rs),
            statistics.median(r.other_pct for r in rs),
        )
        for (case, server, conc), rs in groups.items()
    ]


def table(case: Case, rows: list[Summary], servers: list[str], rounds: int) -> str:
    order = {name: i for i, name in enumerate(servers)}
    rows = sorted((r for r in rows if r.case == case.name), key=lambda r: (r.concurrency, order.get(r.server, 99)))
    head = (
        f"{'server':<16}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs/req':>12}{'errors':>8}{'other %':>9}"
    )
    lines = [f"== {case.name}: {case.description} ==", head, "-" * len(head)]
    for r in rows:
        name = r.server if r.rounds >= rounds else f"{r.server}*"
        lines.append(
            f"{name:<16}{r.concurrency:>5}{r.rps:>10.0f}{r.p50_ms:>9.2f}"
            f"{r.p99_ms:>9.2f}{r.cpu_us_per_req:>12.0f}{r.errors:>8}{r.other_pct:>9.0f}"
        )
    if any(r.rounds < rounds for r in rows):
        lines.append(f"* fewer than {rounds} rounds: the server failed during the run (see 'skipped')")
    noisy = [r for r in rows if r.other_pct >= NOISY_PCT]
    if noisy:
        lines.append(
            f"warning: other processes took >= {NOISY_PCT}% of the server core in {len(noisy)} row(s); "
            "those figures are low"
        )
    return "\n".join(lines)


def _verdict(value: float, target: float) -> str:
    return "met" if value >= target else "NOT met"


def ratio_lines(case: Case, rows: list[Summary]) -> list[str]:
    """`echo c=64: kingpost/truss = 4.3x, ...`; targets are judged at case.target_concurrency."""
    by = {(r.server, r.concurrency): r for r in rows if r.case == case.name}
    servers = sorted({s for s, _ in by})
    measured = [s for s in servers if s.startswith(SUBJECT)]
    lines = []
    for conc in sorted({c for _, c in by}):
        subjects = [s for s in measured if (s, conc) in by] or (["bare"] if ("bare", conc) in by else [])
        judged = conc == case.target_concurrency
        for subject in subjects:
            parts = []
            for other in [s for s in servers if s not in subjects and (s, conc) in by and by[(s, conc)].rps > 0]:
                ratio = by[(subject, conc)].rps / by[(other, conc)].rps
                text = f"{subject}/{other} = " + (f"{ratio:.1f}x" if ratio >= 1.5 else f"{ratio:.2f}")
                if judged and subject.startswith(SUBJECT) and other in case.targets:
                    text += f" (target >= {case.targets[other]:g}: {_verdict(ratio, case.targets[other])})"
                parts.append(text)
            if parts:
                lines.append(f"{case.name} c={conc}: " + ", ".join(parts))
        for subject in subjects:  # CPU per request: the figure least moved by a busy machine
            mine = by[(subject, conc)].cpu_us_per_req
            others = [
                f"{o} {by[(o, conc)].cpu_us_per_req:.0f} ({by[(o, conc)].cpu_us_per_req / mine:.2g}x)"
                for o in servers
                if o not in subjects and (o, conc) in by and mine > 0
            ]
            if others:
                lines.append(f"{case.name} c={conc} CPU µs/req: {subject} {mine:.0f}, " + ", ".join(others))
        if case.limit_rps:
            fractions = []
            for server in subjects + [s for s in servers if s not in subjects and (s, conc) in by]:
                frac = by[(server, conc)].rps / case.limit_rps
                text = f"{server} = {frac:.0%}"
                if judged and server.startswith(SUBJECT) and case.limit_target:
                    text += f" (target >= {case.limit_target:.0%}: {_verdict(frac, case.limit_target)})"
                fractions.append(text)
            lines.append(f"{case.name} c={conc}: " + ", ".join(fractions) + f" of the {case.limit_rps:g} req/s limit")
        lines += _speedup_lines(case, by, conc)
    if by and not measured:
        lines.append(f"{case.name}: {SUBJECT} not measured; the ratios are relative to bare")
    return lines


def _speedup_lines(case: Case, by: dict[tuple[str, int], Summary], conc: int) -> list[str]:
    """Case.speedups: `batched c=64: kingpost-batched/kingpost = 7.9x req/s (target >= 5: met);
    p50 270 -> 31 ms, p99 290 -> 45 ms; CPU µs/req 640 -> 180; cores used 0.14 -> 0.27`.

    Cores used is req/s x CPU µs/req: how much CPU the server got; with two workers on a machine
    whose other work takes a core, it shows the second worker had little to run on."""
    lines = []
    for num, den, target in case.speedups:
        a, b = by.get((num, conc)), by.get((den, conc))
        if a is None or b is None or b.rps <= 0:
            continue
        ratio = a.rps / b.rps
        shown = f"{ratio:.1f}x" if ratio >= 1.5 else f"{ratio:.2f}x"
        text = f"{case.name} c={conc}: {num}/{den} = {shown} req/s"
        if target is not None and conc == case.target_concurrency:
            text += f" (target >= {target:g}: {_verdict(ratio, target)})"
        text += (
            f"; p50 {_ms(b.p50_ms)} -> {_ms(a.p50_ms)} ms, p99 {_ms(b.p99_ms)} -> {_ms(a.p99_ms)} ms"
            f"; CPU µs/req {b.cpu_us_per_req:.0f} -> {a.cpu_us_per_req:.0f}"
            f"; cores used {_cores(b):.2f} -> {_cores(a):.2f}"
        )
        lines.append(text)
    return lines


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _cores(row: Summary) -> float:
    return row.rps * row.cpu_us_per_req / 1e6


def write_json(path: Path, meta: dict[str, Any], rounds: list[Round], summaries: list[Summary]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"meta": meta, "summary": [asdict(s) for s in summaries], "rounds": [asdict(r) for r in rounds]}
    path.write_text(json.dumps(record, indent=2) + "\n")


def stream_lines(case: Case, rows: list[Summary], first: dict[str, list[float]]) -> list[str]:
    """Streaming cases: chunks/s and CPU µs/chunk per server and level, kingpost over bare (judged at
    target_concurrency and at c=1), and the first chunk's ms (median of per-round medians, spread)."""
    if not case.chunks:
        return []
    by = {(r.server, r.concurrency): r for r in rows if r.case == case.name}
    lines = []
    for conc in sorted({c for _, c in by}):
        parts = [f"{s} {by[(s, conc)].rps * case.chunks:,.0f} chunks/s "
                 f"{by[(s, conc)].cpu_us_per_req / case.chunks:.2f} µs/chunk"
                 for s in sorted({s for s, c in by if c == conc})]
        lines.append(f"{case.name} c={conc}: " + ", ".join(parts))
        mine, bare = by.get((SUBJECT, conc)), by.get(("bare", conc))
        if mine and bare and bare.rps and mine.cpu_us_per_req:
            ratio = mine.rps / bare.rps
            cpu_ratio = bare.cpu_us_per_req / mine.cpu_us_per_req
            target = case.targets.get("bare")
            judged = target and conc in (1, case.target_concurrency)
            verdict = f" (target >= {target:g}: {_verdict(ratio, target)})" if judged else ""
            lines.append(f"{case.name} c={conc}: kingpost/bare chunks/s = {ratio:.2f}{verdict}; "
                         f"per server CPU (bare µs/chunk / kingpost's) = {cpu_ratio:.2f}")
    for server, medians in sorted(first.items()):
        ordered = sorted(medians)
        lines.append(f"{case.name} first chunk: {server} {statistics.median(ordered):.3f} ms "
                     f"(rounds {', '.join(f'{m:.3f}' for m in ordered)})")
    if SUBJECT in first and "bare" in first:
        over = statistics.median(first[SUBJECT]) - statistics.median(first["bare"])
        lines.append(f"{case.name} first chunk: kingpost - bare = {over:.3f} ms (target <= 0.1: "
                     f"{_verdict(-over, -0.1)})")
    return lines
