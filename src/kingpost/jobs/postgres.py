"""The PostgreSQL job store, through psycopg 3 (``pip install 'kingpost[postgres]'``).

For several machines sharing one queue. Claims use ``FOR UPDATE SKIP LOCKED``, so concurrent
workers take different jobs without waiting for each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kingpost.errors import KingpostError
from kingpost.jobs.store import SqlStore


class PostgresStore(SqlStore):
    placeholder = "%s"
    lock_rows = " FOR UPDATE SKIP LOCKED"
    blob = "BYTEA"
    real = "DOUBLE PRECISION"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise KingpostError("a postgresql:// jobs database needs psycopg 3: pip install 'kingpost[postgres]'.") \
                from exc
        self._psycopg = psycopg
        self._url = url
        try:
            self._conn = self._connect()
            with self._conn.transaction():  # two servers starting at once must not both create the tables
                self._conn.execute("SELECT pg_advisory_xact_lock(7155001)")
                for statement in self.schema():
                    self._conn.execute(statement)
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split()).rstrip(".")  # psycopg's message spans lines
            raise KingpostError(f"cannot open the jobs database {_redact(url)}: {detail}.") from exc

    def _connect(self) -> Any:
        return self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)

    def _live(self) -> Any:
        """The connection, made again if the last one broke (a restarted server, a dropped link).
        A call that failed with the old one is not retried: its outcome is unknown, and the
        service's loops try again at their next tick."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Any]:
        conn = self._live()
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        with self._live().cursor() as cur:  # autocommit: the statement is its own transaction
            yield cur

    def close(self) -> None:
        self._conn.close()


def _redact(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, user = head.partition("//")
    return f"{scheme}//{user.split(':', 1)[0]}:***@{tail}"
