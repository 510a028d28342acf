"""Batched predict: one call on a list of jobs' inputs, checked, and each job handed its own item."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from kingpost.config import Batching
from kingpost.errors import KingpostError, ModelError
from kingpost.predictor.jobs import Job
from kingpost.stats import RuntimeStats


def batch_outputs(inputs: int, outputs: Any) -> Sequence[Any]:
    if not isinstance(outputs, (Sequence, *_array_like())) or isinstance(outputs, str | bytes):
        raise ModelError("predict", f"batched predict must return a list of {inputs} outputs, "
                                    f"returned a {type(outputs).__name__}", status=500)
    if len(outputs) != inputs:  # type: ignore[arg-type]  # kingpost's own sentence: shown to the caller
        raise ModelError("predict", f"batched predict returned {len(outputs)} outputs for a batch of "  # type: ignore[arg-type]
                                    f"{inputs} inputs; it must return one output per input, in order", status=500)
    return outputs  # type: ignore[return-value]


def _array_like() -> tuple[type, ...]:
    import sys

    np = sys.modules.get("numpy")
    return (np.ndarray,) if np is not None else ()


def window(first: Job, batching: Batching) -> Iterator[float]:
    """Before each further job of the batch ``first`` opens: the seconds left to wait for it (at
    most ``max_wait_ms`` after ``first`` arrived; <= 0: take only what already waits)."""
    until = first.enqueued + batching.max_wait_ms / 1000
    for _ in range(batching.max_batch_size - 1):
        yield until - time.monotonic()


def batch_inputs(stats: RuntimeStats, jobs: list[Job]) -> list[Any]:
    """The list predict is called with (its size observed in ``stats.batch_sizes``)."""
    stats.batch_sizes.observe(len(jobs))
    return [job.input for job in jobs]


def hand_out(jobs: list[Job], outputs: Any, error: KingpostError | None,
             deliver: Callable[[Job, Any], None], fail: Callable[[Job, BaseException], None]) -> None:
    """Each job its own item of a batched predict's ``outputs``, or every job the ``error``."""
    if error is None:
        try:
            checked = batch_outputs(len(jobs), outputs)
        except KingpostError as err:
            error = err
        else:
            for job, output in zip(jobs, checked, strict=True):
                deliver(job, output)
            return
    for job in jobs:
        fail(job, error)
