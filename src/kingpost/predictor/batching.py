"""Batched predict: one call on a list of jobs' inputs, checked, and each job handed its own item."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from kingpost.errors import KingpostError, ModelError, user_error
from kingpost.predictor.jobs import Job
from kingpost.stats import RuntimeStats


def batch_outputs(inputs: int, outputs: Any) -> Sequence[Any]:
    if not isinstance(outputs, (Sequence, *_array_like())) or isinstance(outputs, str | bytes):
        raise ModelError("predict", f"batched predict must return a list of {inputs} outputs, "
                                    f"returned a {type(outputs).__name__}")
    if len(outputs) != inputs:  # type: ignore[arg-type]
        raise ModelError("predict", f"batched predict returned {len(outputs)} outputs for a batch of "  # type: ignore[arg-type]
                                    f"{inputs} inputs; it must return one output per input, in order")
    return outputs  # type: ignore[return-value]


def _array_like() -> tuple[type, ...]:
    import sys

    np = sys.modules.get("numpy")
    return (np.ndarray,) if np is not None else ()


def batch_started(stats: RuntimeStats, jobs: list[Job]) -> float:
    stats.batch_sizes.observe(len(jobs))
    stats.predicting += len(jobs)
    return time.perf_counter()


def batch_done(stats: RuntimeStats, jobs: list[Job], start: float, outputs: Any, error: BaseException | None,
               deliver: Callable[[Job, Any], None], fail: Callable[[Job, BaseException], None]) -> None:
    stats.predicting -= len(jobs)
    stats.stages["predict"].observe(time.perf_counter() - start)
    try:
        if error is not None:
            raise user_error("predict", error)
        checked = batch_outputs(len(jobs), outputs)
    except KingpostError as err:
        for job in jobs:
            fail(job, err)
    else:
        for job, output in zip(jobs, checked, strict=True):
            deliver(job, output)
