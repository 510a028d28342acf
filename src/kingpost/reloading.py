"""A new version of a bundle, loaded beside the running one; the old one retired once it is idle.

Used by ``Bundle.reload()`` and by ``kingpost serve --reload``. The caller switches to the new
runtime only after :func:`load_version` returned it ready, so a version that fails to import or
load never serves: the old one goes on, and the caller reports the error. Requests already inside
the old runtime finish there; :func:`retire` stops it once none is left.

model.py and the modules in its directory are imported afresh. Packages under ``packages/`` or
``external_package_dirs`` are ordinary imports, cached by Python: a change there needs a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from kingpost import defaults, loader
from kingpost.runtime import Runtime

logger = logging.getLogger(__name__)


async def load_version(bundle_dir: str | Path, *, secrets_dir: str | Path | None = None) -> Runtime:
    """Read config.yaml and model.py from disk again and start a new runtime from them.

    Raises ConfigError or ModelLoadError (the old version, if any, is untouched).
    """
    runtime = Runtime.from_dir(bundle_dir, secrets_dir=secrets_dir)
    loader.forget(runtime.bundle_dir, runtime.config)
    try:
        await runtime.start()
    except BaseException:
        await runtime.stop()
        raise
    return runtime


async def retire(runtime: Runtime, *, timeout: float = defaults.RELOAD_RETIRE_TIMEOUT_S) -> None:
    """Stop ``runtime`` once no request is inside it (or after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    stats = runtime.stats
    while (stats.in_flight or stats.predicting) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if stats.in_flight or stats.predicting:
        logger.warning("%s: the previous version still had %d request(s) after %g s; stopping it anyway",
                       runtime.name, stats.in_flight + stats.predicting, timeout)
    await runtime.stop()
