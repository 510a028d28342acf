"""The predict watchdog: predict busy with nothing finished and nothing streamed for a bound is stuck.

While it is stuck, readiness answers 503 (an orchestrator then replaces the process); ``on_stuck``
is called once each time it gets stuck (with several workers, the worker ends and its supervisor
starts a fresh one). It looks ``min(1, bound / 4)`` s apart, so it tells within that of the bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from kingpost.stats import RuntimeStats

logger = logging.getLogger("kingpost.server")


class PredictWatchdog:
    def __init__(self, stats: Callable[[], Iterable[RuntimeStats]], bound: float,
                 on_stuck: Callable[[], None] | None = None) -> None:
        self.stats = stats  # every model's stats (a multi-model server loads and unloads them)
        self.bound = bound
        self.on_stuck = on_stuck
        self.stuck = False
        self.chunks = 0  # stream chunks sent: the front door counts them, as progress a stream makes
        self._task: asyncio.Task[None] | None = None

    @property
    def sentence(self) -> str:
        return f"predict has made no progress for more than {self.bound:g} s (runtime.limits.predict_stuck_s)"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        last = self._progress()
        since = loop.time()
        while True:
            await asyncio.sleep(min(1.0, self.bound / 4))
            now = loop.time()
            progress = self._progress()
            if progress != last or not any(s.predicting > 0 for s in self.stats()):
                last, since = progress, now
                if self.stuck:
                    self.stuck = False
                    logger.warning("predict made progress again; readiness is 200 again")
            elif not self.stuck and now - since > self.bound:
                self.stuck = True
                logger.error("%s; readiness answers 503 until it does", self.sentence)
                if self.on_stuck is not None:
                    self.on_stuck()

    def _progress(self) -> tuple[int, int]:
        return sum(s.stages["predict"].count for s in self.stats()), self.chunks
