"""The one place a user hook is called: timed, counted, and its error translated.

A :class:`Hook` is built once per hook at load time (the runtime decides there whether it runs on
the loop, on a pool thread or on a predict thread); the request path only calls a bound method:

- :meth:`Hook.call` calls a sync hook on the current thread, :meth:`Hook.acall` awaits an async
  one. Both observe the stage's latency histogram, keep ``stats.predicting`` for predict (``n``
  items: a batch counts its size), and raise what the hook raised as kingpost's error
  (:func:`kingpost.errors.user_error`, or the ``translate`` given, as for ``load``).
- A generator predict is timed and counted until its stream ends: the predictor wraps its pump
  in :meth:`Hook.started` / :meth:`Hook.finished` and turns an error raised while iterating into
  kingpost's with :meth:`Hook.error`. (A plain predict that *returns* a generator is timed until
  it returns; its predict slot is held until the stream ends all the same.)
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from kingpost.errors import KingpostError, user_error
from kingpost.stats import RuntimeStats
from kingpost.types import HookKind


class Hook:
    """One user hook and what calling it entails."""

    __slots__ = ("_translate", "counts", "elapsed", "fn", "histogram", "kind", "name", "stats")

    def __init__(self, fn: Callable[[Any], Any], name: str, kind: HookKind, stats: RuntimeStats, *,
                 timed: bool = True, translate: Callable[[BaseException], KingpostError] | None = None) -> None:
        self.fn = fn
        self.name = name
        self.kind = kind
        self.stats = stats
        self.histogram = stats.stages.get(name) if timed else None
        self.counts = name == "predict"  # stats.predicting: items inside predict now
        self.elapsed = 0.0  # the last call's duration (the last to finish, with several predict threads)
        self._translate = translate

    def error(self, exc: BaseException) -> KingpostError:
        """What the hook raised, as kingpost's error (its ``__cause__`` keeps the user's exception)."""
        if self._translate is not None:
            err = self._translate(exc)
            err.__cause__ = exc
            return err
        return user_error(self.name, exc)

    def call(self, value: Any, n: int = 1) -> Any:
        """Call a sync hook here and now; raises a KingpostError.

        Written out rather than through started/finished: this is the echo request's predict.
        """
        stats = self.stats
        if self.counts:
            stats.predicting += n
        start = perf_counter()
        try:
            return self.fn(value)
        except BaseException as exc:  # noqa: BLE001 - the caller answers it; error() keeps the cause
            raise self.error(exc)  # noqa: B904
        finally:
            self.elapsed = elapsed = perf_counter() - start
            if self.counts:
                stats.predicting -= n
            if self.histogram is not None:
                self.histogram.observe(elapsed)

    async def acall(self, value: Any, n: int = 1) -> Any:
        """Await an async hook; raises a KingpostError."""
        start = self.started(n)
        try:
            return await self.fn(value)
        except Exception as exc:  # noqa: BLE001 - cancellation passes through untranslated
            raise self.error(exc)  # noqa: B904
        finally:
            self.finished(start, n)

    def started(self, n: int = 1) -> float:
        """A call spanning more than ``fn`` (a generator predict's stream) began; pass the result to
        :meth:`finished`."""
        if self.counts:
            self.stats.predicting += n
        return perf_counter()

    def finished(self, start: float, n: int = 1) -> None:
        """The call begun at ``start`` ended (returned, raised, or its stream ended or was abandoned)."""
        self.elapsed = elapsed = perf_counter() - start
        if self.counts:
            self.stats.predicting -= n
        if self.histogram is not None:
            self.histogram.observe(elapsed)
