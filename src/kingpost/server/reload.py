"""``kingpost serve DIR --reload``: watch the bundle and switch to each new version once it loads.

Changes to any file of the bundle (code, config, data, examples) are gathered for ``debounce_ms``;
then a new runtime loads beside the serving one (:mod:`kingpost.reloading`). Once it is ready the
app switches to it, and the old one is stopped when its last request is done. A version that fails
to load leaves the old one serving; the failure is printed on stderr, shown on the playground and
in readiness (``reload_error``) until a later version loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kingpost import defaults
from kingpost.errors import KingpostError
from kingpost.reloading import load_version, retire

if TYPE_CHECKING:
    from kingpost.server.app import App

logger = logging.getLogger("kingpost.server")

_IGNORED_DIRS = frozenset({"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules"})
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".tmp", "~")


def relevant(path: str) -> bool:
    """Whether a changed path is part of the bundle (not a cache, VCS or an editor's scratch file)."""
    parts = Path(path).parts
    if any(part in _IGNORED_DIRS for part in parts):
        return False
    name = parts[-1] if parts else ""
    return not (name.endswith(_IGNORED_SUFFIXES) or name.startswith(".#"))


class Reloader:
    """Watches ``directory`` with watchfiles and reloads ``app`` on each change."""

    def __init__(self, app: App, directory: Path, *, secrets_dir: Path | None = None,
                 debounce_ms: int = defaults.RELOAD_DEBOUNCE_MS) -> None:
        import watchfiles  # decided when the server starts: a clear error now, not on the first change

        self._watchfiles = watchfiles
        self.app = app
        self.directory = directory
        self.secrets_dir = secrets_dir
        self.debounce_ms = debounce_ms
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.retiring: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _watch(self) -> None:
        watch = self._watchfiles.awatch(self.directory, stop_event=self._stop, debounce=self.debounce_ms, step=20,
                                        watch_filter=lambda change, path: relevant(path))
        async for changes in watch:
            names = sorted({str(Path(p).relative_to(self.directory)) for _, p in changes
                            if Path(p).is_relative_to(self.directory)})
            await self.reload(names)

    async def reload(self, changed: list[str] | None = None) -> bool:
        """Load the bundle as it is on disk; switch to it when it loads. Returns whether it did."""
        async with self._lock:
            what = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "") if changed else "the bundle"
            start = time.perf_counter()
            try:
                new = await load_version(self.directory, secrets_dir=self.secrets_dir)
            except KingpostError as exc:
                self.app.reload_error = str(exc)
                print(f"kingpost: reload failed after a change to {what}; still serving the previous version: {exc}",
                      file=sys.stderr, flush=True)
                return False
            old = self.app.switch(new)
            self.app.reload_error = None
            print(f"kingpost: reloaded after a change to {what} ({time.perf_counter() - start:.2f} s)",
                  file=sys.stderr, flush=True)
            task = asyncio.get_running_loop().create_task(retire(old))
            self.retiring.add(task)
            task.add_done_callback(self.retiring.discard)
            return True
