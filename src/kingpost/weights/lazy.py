"""Truss's ``lazy_data_resolver``: the fetch runs in the background while the Model is built.

A Model whose ``__init__`` takes ``lazy_data_resolver`` (or ``**kwargs``) gets one, as under Truss.
When its model.py calls ``block_until_download_complete()`` (in ``__init__`` or ``load()``, before it
opens the files) the fetch runs in the background meanwhile; any other Model is built after the
fetch, with a resolver that is already done. kingpost waits for the fetch before the model is ready
even when a lazy Model never waits, and says so in a warning (Truss raises then).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class LazyDataResolver:
    """Started with the fetch to run (None: nothing to fetch); the Model waits on it."""

    def __init__(self, fetch: Callable[[], Any] | None, result: str = "") -> None:
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._result = result
        self._start = time.monotonic()
        self.collected = fetch is None
        if fetch is None:
            self._done.set()
        else:
            threading.Thread(target=self._run, args=(fetch,), name="kingpost-lazy-fetch", daemon=True).start()

    def _run(self, fetch: Callable[[], Any]) -> None:
        try:
            fetch()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            self._error = exc
        finally:
            self._done.set()

    def block_until_download_complete(self, log_stats: bool = True, issue_collect: bool = True) -> str:
        """Wait until every source is fetched and in place; raises RuntimeError if the fetch failed."""
        if issue_collect:
            self.collected = True
        self._done.wait()
        if self._error is not None:
            raise RuntimeError(f"Error occurred while fetching data: {self._error}") from self._error
        if log_stats:
            logger.info("model_cache: fetch took %.2f s", time.monotonic() - self._start)
        return self._result

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def __repr__(self) -> str:
        return f"LazyDataResolver(done={self._done.is_set()}, collected={self.collected})"
