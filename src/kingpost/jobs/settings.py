"""Where jobs are kept and how they are run: one frozen object, from flags and environment variables.

Each setting, its environment variable and its default:

- ``location``: a directory (SQLite) or a ``postgresql://`` URL; ``KINGPOST_JOBS_DIR`` or
  ``KINGPOST_JOBS_DATABASE``; none by default: jobs are off.
- ``share`` of the predict slots jobs may hold (at least one slot): ``KINGPOST_JOBS_SHARE``, 0.5.
- ``rerun_interrupted``: a job whose worker died reruns, else it ends ``interrupted``:
  ``KINGPOST_JOBS_RERUN``, 1.
- ``lease_s``: a lease lapses this long after its worker last renewed it (every third of it):
  ``KINGPOST_JOBS_LEASE_S``, 30.
- ``poll_s``: how often an idle worker looks for jobs other processes submitted, and expires
  overdue ones: ``KINGPOST_JOBS_POLL_S``, 0.5.
- ``retention_s``: finished jobs and their outputs are kept this long: ``KINGPOST_JOBS_RETENTION_S``,
  604800 (7 days).
- ``webhook_secret`` (else the bundle's secret ``webhook_secret``): ``KINGPOST_WEBHOOK_SECRET``.
- ``webhook_attempts``, ``webhook_delay_s`` (doubling, capped at 300 s), ``webhook_timeout_s``:
  ``KINGPOST_WEBHOOK_ATTEMPTS`` 8, ``KINGPOST_WEBHOOK_DELAY_S`` 1, ``KINGPOST_WEBHOOK_TIMEOUT_S`` 10.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kingpost import defaults
from kingpost.errors import ConfigError

OFF_SENTENCE = ("async jobs are off on this server; start it with --jobs-dir DIR (or KINGPOST_JOBS_DIR) "
                "or --jobs-database postgresql://... (or KINGPOST_JOBS_DATABASE).")


@dataclass(frozen=True)
class JobSettings:
    location: str | None = None
    share: float = defaults.JOBS_SHARE
    rerun_interrupted: bool = defaults.JOBS_RERUN
    lease_s: float = defaults.JOBS_LEASE_S
    poll_s: float = defaults.JOBS_POLL_S
    retention_s: float = defaults.JOBS_RETENTION_S
    webhook_secret: str | None = dataclasses.field(default=None, repr=False)
    webhook_attempts: int = defaults.WEBHOOK_ATTEMPTS
    webhook_delay_s: float = defaults.WEBHOOK_DELAY_S
    webhook_timeout_s: float = defaults.WEBHOOK_TIMEOUT_S

    @property
    def enabled(self) -> bool:
        return self.location is not None

    @property
    def is_postgres(self) -> bool:
        return self.location is not None and self.location.startswith(("postgresql://", "postgres://"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, jobs_dir: str | Path | None = None,
                 jobs_database: str | None = None, webhook_secret: str | None = None) -> JobSettings:
        """Settings from explicit values first, then ``KINGPOST_JOBS_*`` variables, then the defaults."""
        env = os.environ if env is None else env
        # jobs_database may be a directory too (the in-process front door takes either in one argument)
        location = jobs_database or (str(jobs_dir) if jobs_dir is not None else None) \
            or env.get("KINGPOST_JOBS_DATABASE") or env.get("KINGPOST_JOBS_DIR") or None
        if location is not None and "://" in location and not location.startswith(("postgresql://", "postgres://")):
            raise ConfigError("--jobs-database", "", "a postgresql:// URL", location.split("://")[0] + "://...")
        values: dict[str, Any] = {"location": location,
                                  "webhook_secret": webhook_secret or env.get("KINGPOST_WEBHOOK_SECRET") or None}
        for name, var, kind in (
            ("share", "KINGPOST_JOBS_SHARE", float), ("rerun_interrupted", "KINGPOST_JOBS_RERUN", bool),
            ("lease_s", "KINGPOST_JOBS_LEASE_S", float), ("poll_s", "KINGPOST_JOBS_POLL_S", float),
            ("retention_s", "KINGPOST_JOBS_RETENTION_S", float),
            ("webhook_attempts", "KINGPOST_WEBHOOK_ATTEMPTS", int),
            ("webhook_delay_s", "KINGPOST_WEBHOOK_DELAY_S", float),
            ("webhook_timeout_s", "KINGPOST_WEBHOOK_TIMEOUT_S", float),
        ):
            raw = env.get(var)
            if raw is not None:
                values[name] = _parse(var, raw, kind)
        settings = cls(**values)
        if not 0 < settings.share <= 1:
            raise ConfigError("KINGPOST_JOBS_SHARE", "", "a number above 0 and at most 1", settings.share)
        if settings.lease_s < 0.5 or settings.poll_s <= 0 or settings.webhook_attempts < 1:
            raise ConfigError("KINGPOST_JOBS_*", "", "lease_s >= 0.5, poll_s > 0 and webhook attempts >= 1",
                              f"lease_s {settings.lease_s}, poll_s {settings.poll_s}, "
                              f"attempts {settings.webhook_attempts}")
        return settings


def _parse(var: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(var, "", "1 or 0 (true or false)", raw)
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(var, "", f"a{'n integer' if kind is int else ' number'}", raw) from None
