"""The deployment environment a model is told about (Truss's ``environment`` kwarg and
``setup_environment`` hook).

Truss reads it as JSON from the file ``environment`` in its dynamic config directory
(``/etc/b10_dynamic_config`` in its images) and calls ``setup_environment`` again whenever that
file changes. kingpost reads the same file, from ``$KINGPOST_DYNAMIC_CONFIG_DIR`` when set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kingpost.errors import ModelLoadError
from kingpost.types import HookKind

logger = logging.getLogger(__name__)

DEFAULT_DIR = "/etc/b10_dynamic_config"
POLL_S = 30.0
"""How often the file is looked at for a change, as in Truss (``$KINGPOST_ENVIRONMENT_POLL_S``)."""


def environment_file() -> Path:
    return Path(os.environ.get("KINGPOST_DYNAMIC_CONFIG_DIR") or DEFAULT_DIR) / "environment"


def read_environment() -> tuple[bool, Any]:
    """(whether the file has content, its JSON value); (False, None) when absent or empty."""
    file = environment_file()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False, None
    except OSError as exc:
        raise ModelLoadError(f"{file}: cannot read the environment file: {exc.strerror or exc}.") from exc
    if not text.strip():
        return False, None
    try:
        return True, json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{file}: expected the environment as JSON, found invalid JSON ({exc.msg}).") from exc


def modified() -> float | None:
    try:
        return environment_file().stat().st_mtime
    except OSError:
        return None


class EnvironmentWatch:
    """Calls ``setup_environment`` before ``load()`` when the file has content, then again (in
    the background, every POLL_S seconds) each time the file changes to a different value."""

    def __init__(self, hook: Callable[[Any], Any], kind: HookKind,
                 pool: Callable[..., Awaitable[Any]]) -> None:
        self._hook = hook
        self._async = kind is HookKind.ASYNC
        self._pool = pool
        self._value: Any = None
        self._mtime: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def first(self, error: Callable[[str, Exception], ModelLoadError]) -> None:
        self._mtime = modified()
        present, value = read_environment()
        if not present:
            return
        try:
            await self._call(value)
        except Exception as exc:
            raise error("setup_environment", exc) from exc

    async def _call(self, value: Any) -> None:
        logger.info("calling setup_environment with environment: %s", value)
        if self._async:
            await self._hook(value)
        else:
            await self._pool(self._hook, value)
        self._value = value

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = float(os.environ.get("KINGPOST_ENVIRONMENT_POLL_S") or POLL_S)
        self._task = loop.create_task(self._poll(interval))

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            mtime = modified()
            if mtime is None or mtime == self._mtime:
                continue
            self._mtime = mtime
            try:
                present, value = read_environment()
                if present and value != self._value:
                    await self._call(value)
            except Exception:
                logger.exception("setup_environment failed for the new environment; the model keeps serving")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
