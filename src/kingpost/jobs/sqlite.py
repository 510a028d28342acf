"""The SQLite job store: one file (``jobs.db``) in a data directory, in WAL mode.

WAL lets readers (a GET of a job) go on while a worker writes, and lets several server processes
on one machine share the file. ``synchronous=NORMAL``: a commit survives the process being killed
(SIGKILL included), since it is in the WAL file before the submit is answered; only a power loss
or kernel crash may lose the last commits. Set ``KINGPOST_JOBS_SQLITE_SYNC=FULL`` to fsync each commit.

A statement takes ~50 us here, less than a hand-off to the store thread and back (two context
switches, several milliseconds on a loaded machine), so :meth:`SqliteStore.inline` gives the
service a second connection that it calls on the event loop itself: it never waits (no busy
timeout: a lock held by another process raises StoreBusy and the call goes to the store thread),
and never checkpoints (the store thread does, every second, so the loop never pays an fsync).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kingpost.errors import KingpostError
from kingpost.jobs.store import SqlStore, StoreBusy

FILENAME = "jobs.db"


class SqliteStore(SqlStore):
    def __init__(self, directory: str | Path, *, no_wait: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        self._no_wait = no_wait
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: opened on one thread, used on another (never two at once)
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=0 if no_wait else 30,
                                         check_same_thread=False)
            sync = os.environ.get("KINGPOST_JOBS_SQLITE_SYNC", "NORMAL").upper()
            if sync not in ("NORMAL", "FULL", "EXTRA"):
                raise KingpostError(f"KINGPOST_JOBS_SQLITE_SYNC: expected NORMAL, FULL or EXTRA, found {sync!r}.")
            self._conn.execute(f"PRAGMA synchronous={sync}")
            if no_wait:
                self._conn.execute("PRAGMA wal_autocheckpoint=0")
            else:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA busy_timeout=30000")
                self._create_schema()
        except (OSError, sqlite3.Error) as exc:
            raise KingpostError(f"{self.path}: cannot open the jobs database: {exc}.") from exc

    def inline(self) -> SqliteStore:
        return SqliteStore(self.directory, no_wait=True)

    def checkpoint(self) -> None:
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")  # take the write lock now: claims by several processes never interleave
        except sqlite3.OperationalError as exc:
            cur.close()
            if self._no_wait:
                raise StoreBusy(str(exc)) from exc
            raise
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
        except sqlite3.OperationalError as exc:  # WAL readers rarely wait: only while a WAL is recovered
            if self._no_wait:
                raise StoreBusy(str(exc)) from exc
            raise
        finally:
            cur.close()

    def close(self) -> None:
        self._conn.close()
