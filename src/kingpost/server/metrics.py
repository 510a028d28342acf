"""Prometheus text exposition of the server's and the runtime's figures, rendered on demand."""

from __future__ import annotations

from collections import Counter

from kingpost.stats import Histogram, RuntimeStats


class ServerMetrics:
    FOLD_EVERY = 1024

    def __init__(self, stats: RuntimeStats) -> None:
        self.stats = stats
        self.responses: Counter[tuple[str, int]] = Counter()  # (route, status) -> count
        self.latency = Histogram(stats.stages["predict"].bounds)
        # Durations of successful predicts not yet counted: an append per request, counted in bulk
        # (every FOLD_EVERY, and before rendering) because a counter and a histogram update per
        # request cost ~2 us on the hot path. The list object never changes; callers may keep it.
        self.answered: list[float] = []

    def answer(self, status: int, seconds: float) -> None:
        """Count one predict response that was not a 200 (200s go to ``answered``)."""
        self.responses["predict", status] += 1
        self.latency.observe(seconds)

    def fold(self) -> None:
        done = self.answered[:]
        self.answered.clear()
        if done:
            self.responses["predict", 200] += len(done)
            self.latency.observe_all(done)

    def render(self, *, waiting: int) -> bytes:
        self.fold()
        s = self.stats
        lines: list[str] = [
            "# HELP kingpost_requests_total HTTP responses by route and status.",
            "# TYPE kingpost_requests_total counter",
        ]
        lines += [f'kingpost_requests_total{{route="{route}",status="{status}"}} {count}'
                  for (route, status), count in sorted(self.responses.items())]
        lines += _histogram("kingpost_request_duration_seconds", "Predict requests, end to end.", self.latency)
        lines += ["# HELP kingpost_stage_duration_seconds Time in each model hook.",
                  "# TYPE kingpost_stage_duration_seconds histogram"]
        for stage, hist in s.stages.items():
            lines += _histogram("kingpost_stage_duration_seconds", "", hist, f'stage="{stage}"', header=False)
        lines += _histogram("kingpost_batch_size", "Items per predict call.", s.batch_sizes)
        for name, kind, help_, value in (
            ("kingpost_in_flight", "gauge", "Requests inside the runtime.", s.in_flight),
            ("kingpost_queue_depth", "gauge", "Requests waiting for a predict slot.", waiting),
            ("kingpost_predicting", "gauge", "Items inside predict now.", s.predicting),
            ("kingpost_rejected_total", "counter", "Requests refused because the queue was full (503).", s.rejected),
            ("kingpost_timeouts_total", "counter", "Requests past runtime.request_timeout_s (504).", s.timed_out),
        ):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return ("\n".join(lines) + "\n").encode()


def _histogram(name: str, help_: str, hist: Histogram, labels: str = "", *, header: bool = True) -> list[str]:
    out = [f"# HELP {name} {help_}", f"# TYPE {name} histogram"] if header else []
    sep = "," if labels else ""
    cumulative = 0
    for bound, count in zip((*hist.bounds, float("inf")), hist.counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {cumulative}')
    suffix = f"{{{labels}}}" if labels else ""
    out += [f"{name}_sum{suffix} {hist.sum:.6f}", f"{name}_count{suffix} {hist.count}"]
    return out
