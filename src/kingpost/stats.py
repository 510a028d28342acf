"""Counters and histograms the runtime keeps; front doors render them (Prometheus in the server).

Updated from the event loop and from predict threads without a lock: a lost increment under a
race is an acceptable price for keeping locks off the request path.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def observe_all(self, values: list[float]) -> None:
        counts, bounds = self.counts, self.bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1
        self.sum += sum(values)
        self.count += len(values)


@dataclass
class RuntimeStats:
    stages: dict[str, Histogram] = field(
        default_factory=lambda: {s: Histogram(LATENCY_BUCKETS) for s in ("preprocess", "predict", "postprocess")}
    )
    batch_sizes: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    rejected: int = 0  # queue full
    timed_out: int = 0
    in_flight: int = 0  # requests inside the runtime
    predicting: int = 0  # requests (items) inside predict now
