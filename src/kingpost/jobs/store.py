"""The job store: a protocol, and the SQL both backends (SQLite, PostgreSQL) share.

Every method is synchronous and atomic (one transaction); the scheduler calls them from one
thread of its own (:class:`kingpost.jobs.service.StoreThread`). Several processes, on one machine
or many, may share one store: a job runs only under a *lease* (``lease_owner`` until
``lease_until``) that its worker renews; a lease that lapses means the worker died, and the next
:meth:`JobStore.claim` reruns that job or marks it ``interrupted``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from kingpost.jobs.record import FINISHED, JobRecord, JobStatus, Submit, new_id

COLUMNS = ("id", "model", "status", "priority", "input", "created_at", "expires_at", "max_attempts",
           "initial_delay_ms", "max_delay_ms", "output", "error", "started_at", "finished_at", "attempts",
           "run_after", "lease_owner", "lease_until", "cancel_requested", "idempotency_key", "webhook_endpoint",
           "webhook_state", "webhook_next_at", "webhook_log", "streamed")
_SELECT = ", ".join(COLUMNS)


class StoreBusy(Exception):
    """An inline store (see :meth:`SqlStore.inline`) could not answer without waiting for a lock."""


class JobStore(Protocol):
    """What the scheduler, the HTTP routes and job handles need of a store."""

    def create(self, model: str, submit: Submit, input_bytes: bytes, now: float) -> tuple[JobRecord, bool]:
        """Insert a queued job; with an idempotency key already used for ``model``, return that job and False."""

    def get(self, job_id: str) -> JobRecord | None: ...

    def recent(self, model: str | None, status: str | None, limit: int) -> list[JobRecord]:
        """Newest first."""

    def cancel(self, job_id: str, now: float) -> JobRecord | None:
        """A queued job becomes cancelled; a running one gets ``cancel_requested`` (its worker stops it)."""

    def claim(self, owner: str, model: str, limit: int, lease_s: float, now: float, *,
              rerun: bool, maintain: bool = True) -> list[JobRecord]:
        """With ``maintain``, expire overdue queued jobs and recover lapsed leases; then lease up to
        ``limit`` queued jobs (priority, then oldest first) to ``owner``."""

    def renew(self, owner: str, job_ids: Sequence[str], until: float) -> list[str]:
        """Extend ``owner``'s leases; return those of ``job_ids`` whose cancellation was asked."""

    def finish(self, job_id: str, owner: str, status: JobStatus, now: float, *, output: bytes | None = None,
               error: str | None = None) -> bool:
        """Settle a job ``owner`` holds; False if the lease was lost (someone else has the job now)."""

    def retry_later(self, job_id: str, owner: str, run_after: float, error: str, *, refund: bool = False) -> bool:
        """Put a job ``owner`` holds back in the queue until ``run_after`` (``refund``: the attempt did not count)."""

    def append_chunk(self, job_id: str, seq: int, data: bytes) -> None: ...

    def chunks(self, job_id: str) -> list[bytes]: ...

    def claim_webhooks(self, owner: str, limit: int, lease_s: float, now: float) -> list[JobRecord]:
        """Lease up to ``limit`` jobs whose webhook delivery is due."""

    def webhook_attempt(self, job_id: str, owner: str, log: list[dict[str, Any]], state: str,
                        next_at: float | None) -> None: ...

    def counts(self, model: str) -> dict[str, int]:
        """Jobs of ``model`` queued and running (index lookups only: cheap however many have finished)."""

    def purge(self, before: float) -> int:
        """Delete finished jobs (and their chunks) finished before ``before`` whose webhook is settled."""

    def inline(self) -> JobStore | None:
        """A second handle that answers on the caller's thread without ever waiting (raising
        :class:`StoreBusy` instead), or None where every call may wait (a network database)."""

    def checkpoint(self) -> None:
        """Housekeeping the backend needs now and then (SQLite: fold the WAL into the database)."""

    def close(self) -> None: ...


class SqlStore:
    """The SQL both backends run. Subclasses give a connection, ``_begin`` and their dialect bits."""

    placeholder = "?"
    lock_rows = ""  # PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent claimers skip each other's rows
    blob = "BLOB"
    real = "REAL"

    def _begin(self) -> contextlib.AbstractContextManager[Any]:
        """A cursor inside a write transaction, committed on exit (rolled back on an exception)."""
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[Any]:
        """A cursor for one read statement, outside any explicit transaction (one round trip)."""
        raise NotImplementedError

    def inline(self) -> JobStore | None:
        return None

    def checkpoint(self) -> None:
        return None

    def _execute(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        cur.execute(sql, params)
        return cur

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._begin() as cur:
            yield cur

    def schema(self) -> list[str]:
        b, r = self.blob, self.real
        return [
            f"""CREATE TABLE IF NOT EXISTS kingpost_jobs (
                id TEXT PRIMARY KEY, model TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL,
                input {b} NOT NULL, created_at {r} NOT NULL, expires_at {r} NOT NULL,
                max_attempts INTEGER NOT NULL, initial_delay_ms INTEGER NOT NULL, max_delay_ms INTEGER NOT NULL,
                output {b}, error TEXT, started_at {r}, finished_at {r}, attempts INTEGER NOT NULL DEFAULT 0,
                run_after {r} NOT NULL DEFAULT 0, lease_owner TEXT, lease_until {r},
                cancel_requested INTEGER NOT NULL DEFAULT 0, idempotency_key TEXT, webhook_endpoint TEXT,
                webhook_state TEXT, webhook_next_at {r}, webhook_log TEXT NOT NULL DEFAULT '[]',
                webhook_owner TEXT, webhook_until {r}, streamed INTEGER NOT NULL DEFAULT 0)""",
            "CREATE INDEX IF NOT EXISTS kingpost_jobs_queue ON kingpost_jobs (model, status, priority, created_at, id)",
            "CREATE INDEX IF NOT EXISTS kingpost_jobs_recent ON kingpost_jobs (model, status, created_at)",
            "CREATE INDEX IF NOT EXISTS kingpost_jobs_all ON kingpost_jobs (model, created_at)",
            "CREATE INDEX IF NOT EXISTS kingpost_jobs_expiry ON kingpost_jobs (model, status, expires_at)",
            "CREATE INDEX IF NOT EXISTS kingpost_jobs_finished ON kingpost_jobs (finished_at)",
            "CREATE INDEX IF NOT EXISTS kingpost_jobs_webhooks ON kingpost_jobs (webhook_state, webhook_next_at)",
            "CREATE UNIQUE INDEX IF NOT EXISTS kingpost_jobs_idempotency ON kingpost_jobs (model, idempotency_key)",
            f"""CREATE TABLE IF NOT EXISTS kingpost_job_chunks (
                job_id TEXT NOT NULL, seq INTEGER NOT NULL, data {b} NOT NULL, PRIMARY KEY (job_id, seq))""",
        ]

    def _create_schema(self) -> None:
        with self._tx() as cur:
            for statement in self.schema():
                self._execute(cur, statement)

    # -- submit, read, cancel ----------------------------------------------------------------------

    def create(self, model: str, submit: Submit, input_bytes: bytes, now: float) -> tuple[JobRecord, bool]:
        job_id = new_id()
        with self._tx() as cur:
            rows = self._execute(cur, f"""INSERT INTO kingpost_jobs (id, model, status, priority, input, created_at,
                expires_at, max_attempts, initial_delay_ms, max_delay_ms, run_after, idempotency_key, webhook_endpoint)
                VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT DO NOTHING RETURNING {_SELECT}""",
                (job_id, model, submit.priority, input_bytes, now, now + submit.max_time_in_queue_seconds,
                 submit.retry.max_attempts, submit.retry.initial_delay_ms, submit.retry.max_delay_ms, now,
                 submit.idempotency_key, submit.webhook_endpoint)).fetchall()
            if rows:
                return _record(rows[0]), True
            row = self._execute(cur, f"SELECT {_SELECT} FROM kingpost_jobs WHERE model = ? AND idempotency_key = ?",
                                (model, submit.idempotency_key)).fetchone()
        if row is None:  # a conflict on the id: astronomically unlikely, but say so rather than return nothing
            raise RuntimeError("could not store the job (id collision); retry.")
        return _record(row), False

    def get(self, job_id: str) -> JobRecord | None:
        with self._read() as cur:
            row = self._execute(cur, f"SELECT {_SELECT} FROM kingpost_jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row is not None else None

    def recent(self, model: str | None, status: str | None, limit: int) -> list[JobRecord]:
        where, params = [], []
        if model is not None:
            where.append("model = ?")
            params.append(model)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        with self._read() as cur:
            rows = self._execute(cur, f"SELECT {_SELECT} FROM kingpost_jobs {clause}"
                                      "ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit)).fetchall()
        return [_record(r) for r in rows]

    def cancel(self, job_id: str, now: float) -> JobRecord | None:
        with self._tx() as cur:
            self._execute(cur, f"""UPDATE kingpost_jobs SET status = 'cancelled', finished_at = ?, {_WEBHOOK_DUE}
                WHERE id = ? AND status = 'queued'""", (now, now, job_id))
            self._execute(cur, "UPDATE kingpost_jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'",
                          (job_id,))
            row = self._execute(cur, f"SELECT {_SELECT} FROM kingpost_jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row is not None else None

    # -- running -----------------------------------------------------------------------------------

    def claim(self, owner: str, model: str, limit: int, lease_s: float, now: float, *,
              rerun: bool, maintain: bool = True) -> list[JobRecord]:
        # "+run_after", "+expires_at": no index on those (a unary plus hides the column from SQLite's
        # planner), so the queue index walks jobs in claim order and stops at LIMIT.
        with self._tx() as cur:
            if maintain:
                self._maintain(cur, model, now, rerun=rerun)
            if limit <= 0:
                return []
            rows = self._execute(cur, f"""UPDATE kingpost_jobs SET status = 'running', lease_owner = ?,
                lease_until = ?, attempts = attempts + 1, started_at = ?
                WHERE id IN (SELECT id FROM kingpost_jobs WHERE model = ? AND status = 'queued' AND +run_after <= ?
                             AND +expires_at >= ? ORDER BY priority, created_at, id LIMIT ?{self.lock_rows})
                RETURNING {_SELECT}""", (owner, now + lease_s, now, model, now, now, limit)).fetchall()
        jobs = [_record(r) for r in rows]
        jobs.sort(key=lambda j: (j.priority, j.created_at, j.id))
        return jobs

    def _maintain(self, cur: Any, model: str, now: float, *, rerun: bool) -> None:
        """Expire overdue queued jobs; settle or requeue running jobs whose lease lapsed."""
        self._execute(cur, f"""UPDATE kingpost_jobs SET status = 'expired', finished_at = ?, {_WEBHOOK_DUE},
            error = 'the job waited longer than its max_time_in_queue_seconds and was not run.'
            WHERE model = ? AND status = 'queued' AND expires_at < ?""", (now, now, model, now))
        lapsed = "model = ? AND status = 'running' AND lease_until < ?"
        self._execute(cur, f"""UPDATE kingpost_jobs SET status = 'cancelled', finished_at = ?, lease_owner = NULL,
            {_WEBHOOK_DUE} WHERE {lapsed} AND cancel_requested = 1""", (now, now, model, now))
        if rerun:
            self._execute(cur, f"""UPDATE kingpost_jobs SET status = 'queued', lease_owner = NULL,
                lease_until = NULL, run_after = ? WHERE {lapsed}""", (now, model, now))
        else:
            self._execute(cur, f"""UPDATE kingpost_jobs SET status = 'interrupted', finished_at = ?,
                lease_owner = NULL, {_WEBHOOK_DUE}, error = ? WHERE {lapsed}""", (now, now, _INTERRUPTED, model, now))

    def renew(self, owner: str, job_ids: Sequence[str], until: float) -> list[str]:
        if not job_ids:
            return []
        marks = ", ".join("?" * len(job_ids))
        with self._tx() as cur:
            self._execute(cur, f"UPDATE kingpost_jobs SET lease_until = ? WHERE lease_owner = ? AND status = 'running' "
                               f"AND id IN ({marks})", (until, owner, *job_ids))
            rows = self._execute(cur, f"SELECT id FROM kingpost_jobs WHERE id IN ({marks}) AND cancel_requested = 1",
                                 tuple(job_ids)).fetchall()
        return [r[0] for r in rows]

    def finish(self, job_id: str, owner: str, status: JobStatus, now: float, *, output: bytes | None = None,
               error: str | None = None) -> bool:
        with self._tx() as cur:
            done = self._execute(cur, f"""UPDATE kingpost_jobs SET status = ?, finished_at = ?, output = ?, error = ?,
                lease_owner = NULL, lease_until = NULL, {_WEBHOOK_DUE}
                WHERE id = ? AND lease_owner = ? AND status = 'running'""",
                (status.value, now, output, error, now, job_id, owner)).rowcount
        return bool(done)

    def retry_later(self, job_id: str, owner: str, run_after: float, error: str, *, refund: bool = False) -> bool:
        with self._tx() as cur:
            done = self._execute(cur, f"""UPDATE kingpost_jobs SET status = 'queued', run_after = ?, error = ?,
                lease_owner = NULL, lease_until = NULL, attempts = attempts - {1 if refund else 0}
                WHERE id = ? AND lease_owner = ? AND status = 'running'""",
                (run_after, error, job_id, owner)).rowcount
        return bool(done)

    def append_chunk(self, job_id: str, seq: int, data: bytes) -> None:
        with self._tx() as cur:
            self._execute(cur, "INSERT INTO kingpost_job_chunks (job_id, seq, data) VALUES (?, ?, ?) "
                               "ON CONFLICT DO NOTHING", (job_id, seq, data))
            if seq == 0:
                self._execute(cur, "UPDATE kingpost_jobs SET streamed = 1 WHERE id = ?", (job_id,))

    def chunks(self, job_id: str) -> list[bytes]:
        with self._read() as cur:
            rows = self._execute(cur, "SELECT data FROM kingpost_job_chunks WHERE job_id = ? ORDER BY seq",
                                 (job_id,)).fetchall()
        return [bytes(r[0]) for r in rows]

    # -- webhooks, metrics, retention --------------------------------------------------------------

    def claim_webhooks(self, owner: str, limit: int, lease_s: float, now: float) -> list[JobRecord]:
        with self._tx() as cur:
            rows = self._execute(cur, f"""UPDATE kingpost_jobs SET webhook_owner = ?, webhook_until = ?
                WHERE id IN (SELECT id FROM kingpost_jobs WHERE webhook_state = 'pending' AND webhook_next_at <= ?
                             AND (webhook_until IS NULL OR webhook_until < ?)
                             ORDER BY webhook_next_at LIMIT ?{self.lock_rows})
                RETURNING {_SELECT}""", (owner, now + lease_s, now, now, limit)).fetchall()
        return [_record(r) for r in rows]

    def webhook_attempt(self, job_id: str, owner: str, log: list[dict[str, Any]], state: str,
                        next_at: float | None) -> None:
        with self._tx() as cur:
            self._execute(cur, """UPDATE kingpost_jobs SET webhook_log = ?, webhook_state = ?, webhook_next_at = ?,
                webhook_owner = NULL, webhook_until = NULL WHERE id = ? AND webhook_owner = ?""",
                (json.dumps(log), state, next_at, job_id, owner))

    def counts(self, model: str) -> dict[str, int]:
        with self._read() as cur:
            rows = self._execute(cur, "SELECT status, COUNT(*) FROM kingpost_jobs WHERE model = ? "
                                      "AND status IN ('queued', 'running') GROUP BY status", (model,)).fetchall()
        return {status: int(n) for status, n in rows}

    def purge(self, before: float) -> int:
        finished = ", ".join(f"'{s}'" for s in FINISHED)
        old = (f"status IN ({finished}) AND finished_at < ? AND "
               "(webhook_state IS NULL OR webhook_state IN ('delivered', 'failed'))")
        with self._tx() as cur:
            self._execute(cur, f"DELETE FROM kingpost_job_chunks WHERE job_id IN (SELECT id FROM kingpost_jobs "
                               f"WHERE {old})", (before,))
            n: int = self._execute(cur, f"DELETE FROM kingpost_jobs WHERE {old}", (before,)).rowcount
        return n


_INTERRUPTED = ("the worker running this job stopped before it finished; it was not rerun "
                "(KINGPOST_JOBS_RERUN=0).")
# A job that just finished owes its webhook a delivery (if it has one); one parameter: now.
_WEBHOOK_DUE = ("webhook_state = CASE WHEN webhook_endpoint IS NULL THEN NULL ELSE 'pending' END, "
                "webhook_next_at = ?")


def _record(row: Sequence[Any]) -> JobRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    values["status"] = JobStatus(values["status"])
    values["input"] = bytes(values["input"])
    if values["output"] is not None:
        values["output"] = bytes(values["output"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    values["streamed"] = bool(values["streamed"])
    values["webhook_log"] = json.loads(values["webhook_log"] or "[]")
    return JobRecord(**values)
