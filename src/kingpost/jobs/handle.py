"""A job as the in-process front door hands it back: ``bundle.submit(x)`` returns a :class:`JobHandle`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kingpost.errors import JobError
from kingpost.jobs.record import JobStatus


class JobHandle:
    """One submitted job: ``status()``, ``result(timeout)``, ``cancel()``. Reads go to the store each time."""

    def __init__(self, job_id: str, call: Callable[[str, str], dict[str, Any] | None]) -> None:
        self.id = job_id
        self._call = call  # (verb, job id) -> the job's view, run on the bundle's loop

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def status(self) -> dict[str, Any]:
        """The job now: ``status`` (queued, running, succeeded, failed, cancelled, expired, interrupted),
        timestamps, ``attempts``, ``error``, ``output`` once succeeded, ``chunks`` when predict streams."""
        return self._view("get")

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the output; raises :class:`JobError` if the job ended otherwise, TimeoutError past ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            view = self._view("get")
            status = JobStatus(view["status"])
            if status is JobStatus.SUCCEEDED:
                return view["output"]
            if status.finished:
                raise JobError(f"job {self.id} ended {status.value}: {view['error']}", status.value)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {status.value} after {timeout:g} s.")
            wait = pause if deadline is None else min(pause, max(deadline - time.monotonic(), 0))
            time.sleep(wait)
            pause = min(pause * 2, 0.25)

    def cancel(self) -> dict[str, Any]:
        """Cancel: a queued job never runs; a running one is stopped where predict can be (a streaming
        predict at its next chunk), else its output is dropped. Returns the job as it is now."""
        return self._view("cancel")

    def _view(self, verb: str) -> dict[str, Any]:
        view = self._call(verb, self.id)
        if view is None:
            raise JobError(f"no job {self.id} in the store (deleted after its retention?).", "missing")
        return view
