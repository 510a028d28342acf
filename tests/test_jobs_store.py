"""The job store contract, run against SQLite (a file in tmp_path) and a real PostgreSQL server the
tests start (tests/postgres.py). Each test gets a fresh database; ``opener()`` opens one more
connection to it, as another worker process would."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kingpost.jobs import JobStatus, JobStore, make_submit, open_store

Opener = Callable[[], JobStore]
_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    if request.param == "sqlite":
        location = str(tmp_path / "jobs")
    else:
        import psycopg

        url = request.getfixturevalue("postgres_url")
        name = f"jobs_test_{next(_databases)}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        location = url.rsplit("/", 1)[0] + "/" + name
    opened: list[JobStore] = []

    def open_one() -> JobStore:
        store = open_store(location)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def add(store: JobStore, i: int, now: float, **kw: object) -> str:
    job, created = store.create("m", make_submit({"i": i}, **kw), f"input-{i}".encode(), now)  # type: ignore[arg-type]
    assert created
    return job.id


def test_a_submit_is_committed_and_read_back_by_another_connection(opener: Opener) -> None:
    a, b = opener(), opener()
    job_id = add(a, 1, 100.0, priority=2, max_time_in_queue_seconds=60,
                 retry={"max_attempts": 3, "initial_delay_ms": 10, "max_delay_ms": 20})
    job = b.get(job_id)
    assert job is not None
    assert (job.status, job.priority, job.input, job.created_at, job.expires_at) == \
        (JobStatus.QUEUED, 2, b"input-1", 100.0, 160.0)
    assert (job.max_attempts, job.initial_delay_ms, job.max_delay_ms) == (3, 10, 20)
    assert b.get("nope") is None
    assert [j.id for j in b.recent("m", "queued", 10)] == [job_id]
    assert b.recent("other-model", None, 10) == []


def test_an_idempotency_key_returns_the_first_job(opener: Opener) -> None:
    store = opener()
    first, created = store.create("m", make_submit(1, idempotency_key="k"), b"1", 1.0)
    again, created_again = store.create("m", make_submit(2, idempotency_key="k"), b"2", 2.0)
    other, created_other = store.create("other", make_submit(3, idempotency_key="k"), b"3", 3.0)
    assert (created, created_again, created_other) == (True, False, True)
    assert again.id == first.id and again.input == b"1"
    assert other.id != first.id


def test_claim_takes_priority_first_then_oldest(opener: Opener) -> None:
    store = opener()
    ids = {(p, t): add(store, t, float(t), priority=p) for p, t in [(2, 1), (1, 2), (0, 3), (1, 4), (0, 5)]}
    claimed = store.claim("w", "m", 10, 30, 10.0, rerun=True)
    assert [j.id for j in claimed] == [ids[0, 3], ids[0, 5], ids[1, 2], ids[1, 4], ids[2, 1]]
    assert all(j.status is JobStatus.RUNNING and j.lease_owner == "w" and j.attempts == 1 for j in claimed)
    assert store.claim("w2", "m", 10, 30, 10.0, rerun=True) == []


def test_two_workers_claiming_at_once_never_take_the_same_job(opener: Opener) -> None:
    first, second = opener(), opener()
    ids = {add(first, i, float(i)) for i in range(120)}
    taken: dict[str, list[str]] = {"a": [], "b": []}

    def work(name: str, store: JobStore) -> None:
        for _ in range(200):
            jobs = store.claim(name, "m", 3, 30, 200.0, rerun=True)
            if not jobs and not store.counts("m").get("queued"):
                return
            taken[name] += [j.id for j in jobs]

    threads = [threading.Thread(target=work, args=(n, s)) for n, s in (("a", first), ("b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not set(taken["a"]) & set(taken["b"])
    assert sorted(taken["a"] + taken["b"]) == sorted(ids)


@pytest.mark.parametrize("rerun", [True, False])
def test_a_lapsed_lease_reruns_the_job_or_marks_it_interrupted(opener: Opener, rerun: bool) -> None:
    store = opener()
    kept, lost = add(store, 1, 0.0), add(store, 2, 0.0)
    store.claim("dead", "m", 2, 10, 1.0, rerun=rerun)  # leases until 11
    assert store.renew("dead", [kept], 30.0) == []  # one lease is renewed, the other lapses
    claimed = store.claim("alive", "m", 5, 10, 12.0, rerun=rerun)
    job = store.get(lost)
    assert job is not None
    if rerun:
        assert [j.id for j in claimed] == [lost]
        assert (job.status, job.attempts, job.lease_owner) == (JobStatus.RUNNING, 2, "alive")
    else:
        assert claimed == []
        assert job.status is JobStatus.INTERRUPTED and "not rerun" in (job.error or "")
    assert store.get(kept).status is JobStatus.RUNNING  # type: ignore[union-attr]
    assert store.finish(kept, "dead", JobStatus.SUCCEEDED, 13.0, output=b"x")


def test_a_worker_that_lost_its_lease_cannot_settle_the_job(opener: Opener) -> None:
    store = opener()
    job_id = add(store, 1, 0.0)
    store.claim("slow", "m", 1, 5, 1.0, rerun=True)
    store.claim("other", "m", 1, 5, 7.0, rerun=True)  # slow's lease lapsed at 6: other reruns it
    assert not store.finish(job_id, "slow", JobStatus.SUCCEEDED, 8.0, output=b"late")
    assert store.finish(job_id, "other", JobStatus.SUCCEEDED, 8.0, output=b"ok")
    job = store.get(job_id)
    assert job is not None and job.output == b"ok" and job.attempts == 2


def test_cancel_a_queued_job_at_once_and_a_running_one_through_its_worker(opener: Opener) -> None:
    store = opener()
    queued, running, orphan = add(store, 1, 0.0, priority=2), add(store, 2, 0.0), add(store, 3, 0.0)
    store.claim("w", "m", 2, 10, 1.0, rerun=True)  # running and orphan (priority 1) run; queued waits
    assert store.cancel(queued, 2.0).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    asked = store.cancel(running, 2.0)
    assert asked is not None and asked.status is JobStatus.RUNNING and asked.cancel_requested
    store.cancel(orphan, 2.0)
    assert store.renew("w", [running], 20.0) == [running]  # the worker learns of it on its next renewal
    store.claim("x", "m", 5, 10, 15.0, rerun=True)  # orphan's lease lapsed: cancelled, not rerun
    assert store.get(orphan).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    assert store.claim("x", "m", 5, 10, 16.0, rerun=True) == []


def test_jobs_past_max_time_in_queue_expire(opener: Opener) -> None:
    store = opener()
    old = add(store, 1, 0.0, max_time_in_queue_seconds=5)
    fresh = add(store, 2, 4.0, max_time_in_queue_seconds=5)
    assert [j.id for j in store.claim("w", "m", 5, 10, 6.0, rerun=True, maintain=False)] == [fresh]
    assert store.get(old).status is JobStatus.QUEUED  # type: ignore[union-attr]  # overdue, never claimed
    store.claim("w", "m", 5, 10, 6.0, rerun=True)  # maintenance marks it
    job = store.get(old)
    assert job is not None and job.status is JobStatus.EXPIRED and "max_time_in_queue_seconds" in (job.error or "")


def test_retry_later_requeues_after_a_delay(opener: Opener) -> None:
    store = opener()
    job_id = add(store, 1, 0.0)
    store.claim("w", "m", 1, 10, 1.0, rerun=True)
    assert store.retry_later(job_id, "w", 5.0, "boom")
    assert store.claim("w", "m", 1, 10, 4.0, rerun=True) == []
    again = store.claim("w", "m", 1, 10, 5.0, rerun=True)
    assert [j.attempts for j in again] == [2]
    assert store.retry_later(job_id, "w", 5.0, "busy", refund=True)
    assert store.claim("w", "m", 1, 10, 6.0, rerun=True)[0].attempts == 2


def test_chunks_are_kept_in_order(opener: Opener) -> None:
    store = opener()
    job_id = add(store, 1, 0.0)
    for seq, data in enumerate([b"a", b"bb", b"ccc"]):
        store.append_chunk(job_id, seq, data)
    assert store.chunks(job_id) == [b"a", b"bb", b"ccc"]
    assert store.get(job_id).streamed  # type: ignore[union-attr]


def test_a_due_webhook_is_leased_to_one_deliverer_and_its_attempts_are_recorded(opener: Opener) -> None:
    a, b = opener(), opener()
    job_id = add(a, 1, 0.0, webhook_endpoint="http://127.0.0.1:9/hook")
    plain = add(a, 2, 0.0)
    a.claim("w", "m", 2, 10, 1.0, rerun=True)
    a.finish(job_id, "w", JobStatus.SUCCEEDED, 2.0, output=b"o")
    a.finish(plain, "w", JobStatus.SUCCEEDED, 2.0, output=b"o")
    assert [j.id for j in a.claim_webhooks("d1", 5, 30, 3.0)] == [job_id]
    assert b.claim_webhooks("d2", 5, 30, 3.0) == []  # leased to d1
    log = [{"at": "t", "status": 500, "error": "the endpoint answered 500"}]
    a.webhook_attempt(job_id, "d1", log, "pending", 10.0)
    assert b.claim_webhooks("d2", 5, 30, 5.0) == []  # not due before 10
    due = b.claim_webhooks("d2", 5, 30, 10.0)
    assert [(j.id, j.webhook_log) for j in due] == [(job_id, log)]
    b.webhook_attempt(job_id, "d2", [*log, {"at": "t", "status": 200, "error": None}], "delivered", None)
    job = a.get(job_id)
    assert job is not None and job.webhook_state == "delivered" and len(job.webhook_log) == 2


def test_purge_deletes_old_finished_jobs_but_keeps_undelivered_webhooks(opener: Opener) -> None:
    store = opener()
    done, owed = add(store, 1, 0.0), add(store, 2, 0.1, webhook_endpoint="http://127.0.0.1:9/")
    live = add(store, 3, 0.2)
    store.claim("w", "m", 2, 100, 1.0, rerun=True)
    store.finish(done, "w", JobStatus.SUCCEEDED, 2.0, output=b"o")
    store.finish(owed, "w", JobStatus.SUCCEEDED, 2.0, output=b"o")
    store.append_chunk(done, 0, b"c")
    assert store.purge(before=3.0) == 1
    assert store.get(done) is None and store.chunks(done) == []
    assert store.get(owed) is not None and store.get(live) is not None
    assert store.counts("m") == {"queued": 1}


def test_the_inline_sqlite_handle_never_waits_for_a_lock(tmp_path: Path) -> None:
    from kingpost.jobs.sqlite import SqliteStore
    from kingpost.jobs.store import StoreBusy

    store = SqliteStore(tmp_path / "jobs")
    inline = store.inline()
    other = SqliteStore(tmp_path / "jobs")  # another process, say, in the middle of a claim
    try:
        job_id = add(inline, 1, 0.0)
        with other._begin() as cur:
            cur.execute("UPDATE kingpost_jobs SET priority = 2")
            with pytest.raises(StoreBusy):
                add(inline, 2, 0.0)
            assert inline.get(job_id) is not None  # a WAL reader is not blocked by the writer
        assert inline.get(job_id).priority == 2  # type: ignore[union-attr]
        add(inline, 3, 0.0)
        store.checkpoint()
    finally:
        for s in (store, inline, other):
            s.close()


def test_the_postgres_store_reconnects_after_its_connection_is_dropped(postgres_url: str) -> None:
    import psycopg

    from kingpost.jobs.postgres import PostgresStore

    store = PostgresStore(postgres_url)
    try:
        job_id = add(store, 1, 0.0)
        pid = store._conn.info.backend_pid
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            store.get(job_id)  # the call that met the dropped connection fails: its outcome is unknown
        assert store.get(job_id) is not None  # the next one reconnects
    finally:
        store.close()


def test_a_sqlite_claim_walks_the_queue_index_without_sorting_the_backlog(tmp_path: Path) -> None:
    import re

    from kingpost.jobs.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "jobs")
    try:
        captured: list[str] = []
        store._conn.set_trace_callback(captured.append)
        store.claim("w", "m", 1, 30, 1.0, rerun=True, maintain=False)
        store._conn.set_trace_callback(None)
        update = next(sql for sql in captured if sql.lstrip().startswith("UPDATE"))
        plan = [row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + re.sub(r"RETURNING .*", "", update,
                                                                                       flags=re.S))]
        assert any("kingpost_jobs_queue" in step for step in plan), plan
        assert not any("TEMP B-TREE" in step for step in plan), plan  # a sort would touch every queued job
    finally:
        store.close()
