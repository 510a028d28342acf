"""The SQLite job store: one file (``jobs.db``) in a data directory, in WAL mode.

WAL lets readers (a GET of a job) go on while a worker writes, and lets several server processes
on one machine share the file. ``synchronous=NORMAL``: a commit survives the process being killed
(SIGKILL included), since it is in the WAL file before the submit is answered; only a power loss
or kernel crash may lose the last commits. Set ``KINGPOST_JOBS_SQLITE_SYNC=FULL`` to fsync each commit.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kingpost.errors import KingpostError
from kingpost.jobs.store import SqlStore

FILENAME = "jobs.db"


class SqliteStore(SqlStore):
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: opened on one thread, used on the store thread (never two at once)
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            sync = os.environ.get("KINGPOST_JOBS_SQLITE_SYNC", "NORMAL").upper()
            if sync not in ("NORMAL", "FULL", "EXTRA"):
                raise KingpostError(f"KINGPOST_JOBS_SQLITE_SYNC: expected NORMAL, FULL or EXTRA, found {sync!r}.")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={sync}")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._create_schema()
        except (OSError, sqlite3.Error) as exc:
            raise KingpostError(f"{self.path}: cannot open the jobs database: {exc}.") from exc

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")  # take the write lock now: claims by several processes never interleave
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def close(self) -> None:
        self._conn.close()
