"""The job service: submit, read and cancel jobs, and run them through the runtime.

One per server process (or per in-process Bundle), all sharing one store. It runs four loops on
the event loop:

- *claim*: when the runtime is ready and a job slot is free, lease queued jobs (priority, then
  oldest first) and run each as a task: preprocess -> predict under the lock -> postprocess, the
  same :meth:`Runtime.predict` a synchronous request takes, so batching groups jobs with requests.
  Jobs hold at most ``share`` of the predict slots (at least one), so synchronous requests always
  find the rest. Woken at once by a submit here or a finished job; other processes' submits are
  seen within ``poll_s``.
- *lease*: renew this process's leases every third of ``lease_s`` (at most every 0.5 s) and stop
  the jobs whose cancellation another process recorded.
- *webhooks*: deliver due webhooks (see :mod:`kingpost.jobs.webhooks`).
- *housekeeping*: delete finished jobs past ``retention_s``; refresh the counts ``/metrics`` shows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kingpost import codecs
from kingpost.errors import InputError, KingpostError, ModelError, NotReadyError, QueueFullError
from kingpost.jobs import webhooks
from kingpost.jobs.record import JobRecord, JobStatus, Submit, iso
from kingpost.jobs.settings import JobSettings
from kingpost.jobs.store import JobStore, StoreBusy
from kingpost.predictor.streams import ChunkStream
from kingpost.runtime import Runtime
from kingpost.types import State

logger = logging.getLogger("kingpost.jobs")
T = TypeVar("T")


def open_store(location: str) -> JobStore:
    """A store for a directory (SQLite) or a ``postgresql://`` URL."""
    if location.startswith(("postgresql://", "postgres://")):
        from kingpost.jobs.postgres import PostgresStore

        return PostgresStore(location)
    from kingpost.jobs.sqlite import SqliteStore

    return SqliteStore(location)


class StoreThread:
    """The store, called on the event loop where it can answer at once (SQLite when no other process
    holds its lock: see :mod:`kingpost.jobs.sqlite`), else on one thread of its own, so the loop
    never waits on a lock or the network."""

    def __init__(self, location: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kingpost-jobs-store")
        self._location = location
        self.store: JobStore | None = None
        self._inline: JobStore | None = None

    async def open(self) -> None:
        self.store = store = await self.call(open_store, self._location)
        self._inline = await self.call(store.inline)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        return asyncio.wrap_future(self._pool.submit(fn, *args, **kwargs))

    async def do(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._inline is not None:
            try:
                return getattr(self._inline, method)(*args, **kwargs)
            except StoreBusy:
                pass
        assert self.store is not None
        return await self.call(getattr(self.store, method), *args, **kwargs)

    async def on_thread(self, method: str, *args: Any) -> Any:
        assert self.store is not None
        return await self.call(getattr(self.store, method), *args)

    def close(self) -> None:
        for store in (self._inline, self.store):
            if store is not None:
                self._pool.submit(store.close)
        self._pool.shutdown(wait=True)


class JobService:
    """Jobs for one runtime. ``await start()``, then ``submit``/``get``/``view``/``cancel``; ``await stop()``."""

    def __init__(self, runtime: Runtime, settings: JobSettings, *, debug: bool = False,
                 grace_s: float = 0.0) -> None:
        assert settings.location is not None
        self.runtime = runtime
        self.settings = settings
        self.debug = debug
        self.grace_s = grace_s  # what stop() gives running jobs by default (the server's --grace-period)
        self.model = runtime.name
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        rt = runtime.config.runtime
        per_call = rt.batching.max_batch_size if rt.batching is not None else 1
        self.capacity = max(1, int(settings.share * rt.predict_concurrency * per_call))
        self.counts: dict[str, int] = {}
        self.store = StoreThread(settings.location)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelling: set[str] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._webhook_wake = asyncio.Event()
        self._deliveries: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(fn()) for fn in (self._claim_loop, self._lease_loop,
                                                          self._webhook_loop, self._housekeeping_loop)]

    async def stop(self, grace_s: float | None = None) -> None:
        """Claim nothing more, give running jobs ``grace_s`` to finish, then stop the rest: each goes
        back to the queue for another worker (or the next start), uncounted; with reruns off
        (``KINGPOST_JOBS_RERUN=0``) it ends ``interrupted`` instead, since its predict may have begun."""
        if not self._loops:  # never started (its store could not be opened)
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
            return
        claim, lease, *others = self._loops
        for task in (claim, *others, *self._deliveries):
            task.cancel()  # an undelivered webhook stays due: it is sent after the next start
        grace = self.grace_s if grace_s is None else grace_s
        if self._running and grace > 0:
            await asyncio.wait(list(self._running.values()), timeout=grace)
        lease.cancel()
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*self._loops, *running, *self._deliveries, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self.store.close)

    # -- the front doors' verbs --------------------------------------------------------------------

    async def submit(self, submit: Submit) -> tuple[JobRecord, bool]:
        """Store a job (committed before this returns); True when new, False for an idempotent repeat."""
        if submit.webhook_endpoint is not None and self.webhook_secret() is None:
            raise InputError("webhook_endpoint needs a signing secret: start the server with --webhook-secret "
                             "(or KINGPOST_WEBHOOK_SECRET), or declare the secret 'webhook_secret' in config.yaml.")
        try:
            data = codecs.encode_msgpack(submit.model_input)
        except ModelError as exc:
            raise InputError(f"model_input cannot be stored: {exc}") from exc
        job, created = await self.store.do("create", self.model, submit, data, time.time())
        if created:
            self._wake.set()
        return job, created

    async def get(self, job_id: str) -> JobRecord | None:
        job: JobRecord | None = await self.store.do("get", job_id)
        return job

    async def recent(self, status: str | None, limit: int) -> list[JobRecord]:
        jobs: list[JobRecord] = await self.store.do("recent", self.model, status, limit)
        return jobs

    async def view(self, job: JobRecord) -> dict[str, Any]:
        """The job as JSON-ready data: its output when it succeeded, the chunks so far when it streams."""
        output = codecs.decode_msgpack(job.output) if job.output is not None else None
        chunks = None
        if job.streamed:
            chunks = [codecs.decode_msgpack(c) for c in await self.store.do("chunks", job.id)]
        return job.view(output=output, chunks=chunks)

    async def cancel(self, job_id: str) -> JobRecord | None:
        job: JobRecord | None = await self.store.do("cancel", job_id, time.time())
        if job is not None and job.status is JobStatus.CANCELLED:
            self._webhook_wake.set()
        elif job is not None and job.status is JobStatus.RUNNING and job_id in self._running:
            self._cancel_here(job_id)
        return job

    def webhook_secret(self) -> str | None:
        if self.settings.webhook_secret is not None:
            return self.settings.webhook_secret
        found = self.runtime.secrets.get("webhook_secret") if "webhook_secret" in self.runtime.secrets else None
        return found or None

    def metrics_lines(self) -> list[str]:
        lines = ["# HELP kingpost_jobs Async jobs of this model queued and running (all workers).",
                 "# TYPE kingpost_jobs gauge"]
        lines += [f'kingpost_jobs{{status="{s}"}} {self.counts.get(s, 0)}' for s in ("queued", "running")]
        lines += ["# HELP kingpost_jobs_queue_depth Async jobs waiting to run (all workers).",
                  "# TYPE kingpost_jobs_queue_depth gauge",
                  f"kingpost_jobs_queue_depth {self.counts.get('queued', 0)}",
                  "# HELP kingpost_jobs_running_here Async jobs this process is running.",
                  "# TYPE kingpost_jobs_running_here gauge",
                  f"kingpost_jobs_running_here {len(self._running)}"]
        return lines

    # -- running jobs ------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        s = self.settings
        last_poll = 0.0
        while True:
            self._wake.clear()
            now = time.time()
            free = self.capacity - len(self._running)
            due = now - last_poll >= s.poll_s
            if self.runtime.state is State.READY and (free > 0 or due):
                try:
                    jobs = await self.store.do("claim", self.owner, self.model, free, s.lease_s, now,
                                               rerun=s.rerun_interrupted, maintain=due)
                except Exception:
                    logger.exception("claiming jobs failed; retrying in %g s", s.poll_s)
                    jobs = []
                if due:
                    last_poll = now
                    self._webhook_wake.set()  # expired or recovered jobs may owe a webhook
                for job in jobs:
                    self._running[job.id] = asyncio.get_running_loop().create_task(self._run(job))
                if jobs and len(jobs) == free:
                    continue  # there may be more
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), s.poll_s)

    async def _run(self, job: JobRecord) -> None:
        try:
            await self._attempt(job)
        except asyncio.CancelledError:
            if job.id in self._cancelling:
                await self._settle(job, JobStatus.CANCELLED, error="the job was cancelled while it ran; "
                                                                   "its output was dropped.")
            elif self.settings.rerun_interrupted:  # stopping: another worker (or the next start) runs it
                await self._try(self.store.do("retry_later", job.id, self.owner, time.time(), "", refund=True))
            else:
                await self._settle(job, JobStatus.INTERRUPTED, error="the server stopped while this job ran; it was "
                                                                     "not rerun (KINGPOST_JOBS_RERUN=0).")
        except Exception:
            logger.exception("job %s: internal error", job.id)
            await self._settle(job, JobStatus.FAILED, error=f"internal error running job {job.id}.")
        finally:
            self._running.pop(job.id, None)
            self._cancelling.discard(job.id)
            self._wake.set()

    async def _attempt(self, job: JobRecord) -> None:
        try:
            result = await self.runtime.predict(codecs.decode_msgpack(job.input))
            if type(result) is ChunkStream:
                result = await self._store_chunks(job, result)
            output = codecs.encode_msgpack(result)
        except (QueueFullError, NotReadyError) as exc:  # not the job's fault: try again soon, uncounted
            await self._try(self.store.do("retry_later", job.id, self.owner, time.time() + 0.2, str(exc),
                                          refund=True))
            return
        except InputError as exc:
            await self._settle(job, JobStatus.FAILED, error=str(exc))
            return
        except KingpostError as exc:
            error = self._sentence(job, exc)
            if job.attempts < job.max_attempts:
                delay = job.retry.delay_s(job.attempts)
                logger.info("job %s: attempt %d failed; retrying in %g s", job.id, job.attempts, delay)
                await self._try(self.store.do("retry_later", job.id, self.owner, time.time() + delay, error))
            else:
                await self._settle(job, JobStatus.FAILED, error=error)
            return
        await self._settle(job, JobStatus.SUCCEEDED, output=output)

    async def _store_chunks(self, job: JobRecord, stream: ChunkStream) -> Any:
        parts: list[Any] = []
        try:
            async for chunk in stream:
                await self.store.do("append_chunk", job.id, len(parts), codecs.encode_msgpack(chunk))
                parts.append(chunk)
        finally:
            await stream.aclose()
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
        if all(isinstance(p, bytes) for p in parts):
            return b"".join(parts)
        return parts

    def _sentence(self, job: JobRecord, exc: KingpostError) -> str:
        if isinstance(exc, ModelError):
            logger.error("job %s: %s", job.id, exc, exc_info=exc.__cause__ or exc)
            if not self.debug:
                return f"the model's {exc.stage} raised an exception (job {job.id}; the server log has the details)."
        return str(exc)

    async def _settle(self, job: JobRecord, status: JobStatus, *, output: bytes | None = None,
                      error: str | None = None) -> None:
        done = await self._try(self.store.do("finish", job.id, self.owner, status, time.time(), output=output,
                                             error=error))
        if done is False:
            logger.warning("job %s: its lease lapsed while it ran (another worker took it over); "
                           "this run's result was dropped", job.id)
        if job.webhook_endpoint is not None:
            self._webhook_wake.set()

    async def _try(self, call: Awaitable[T]) -> T | None:
        task = asyncio.ensure_future(call)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            return await task  # stopping: let the write land, it is quick
        except Exception:
            logger.exception("the jobs database refused a write")
            return None

    def _cancel_here(self, job_id: str) -> None:
        task = self._running.get(job_id)
        if task is not None and job_id not in self._cancelling:
            self._cancelling.add(job_id)
            task.cancel()

    async def _lease_loop(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(min(s.lease_s / 3, 0.5))
            if not self._running:
                continue
            try:
                cancelled = await self.store.do("renew", self.owner, list(self._running), time.time() + s.lease_s)
            except Exception:
                logger.exception("renewing job leases failed")
                continue
            for job_id in cancelled:
                self._cancel_here(job_id)

    # -- webhooks and housekeeping -----------------------------------------------------------------

    async def _webhook_loop(self) -> None:
        s = self.settings
        lease = 2 * s.webhook_timeout_s + 5
        while True:
            self._webhook_wake.clear()
            free = 8 - len(self._deliveries)
            if free > 0:
                try:
                    jobs = await self.store.do("claim_webhooks", self.owner, free, lease, time.time())
                except Exception:
                    logger.exception("claiming webhook deliveries failed")
                    jobs = []
                for job in jobs:
                    task = asyncio.get_running_loop().create_task(self._deliver(job))
                    self._deliveries.add(task)
                    task.add_done_callback(self._delivered)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._webhook_wake.wait(), min(s.poll_s, s.webhook_delay_s))

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        self._webhook_wake.set()

    async def _deliver(self, job: JobRecord) -> None:
        s = self.settings
        assert job.webhook_endpoint is not None
        output = codecs.decode_msgpack(job.output) if job.output is not None else None
        body = webhooks.payload(job, output)
        started = time.time()
        status, reason = await asyncio.get_running_loop().run_in_executor(
            None, webhooks.post, job.webhook_endpoint, body, self.webhook_secret(), s.webhook_timeout_s)
        ok = status is not None and 200 <= status < 300
        log = [*job.webhook_log, {"at": iso(started), "status": status,
                                  "error": None if ok else reason or f"the endpoint answered {status}"}]
        if ok:
            state, next_at = "delivered", None
        elif len(log) >= s.webhook_attempts:
            state, next_at = "failed", None
            logger.warning("job %s: webhook delivery failed %d times; giving up", job.id, len(log))
        else:
            state, next_at = "pending", time.time() + webhooks.next_delay(len(log), s.webhook_delay_s)
        await self._try(self.store.do("webhook_attempt", job.id, self.owner, log, state, next_at))

    async def _housekeeping_loop(self) -> None:
        s = self.settings
        last_purge = 0.0
        while True:
            try:
                self.counts = await self.store.on_thread("counts", self.model)  # a count, off the loop
                await self.store.on_thread("checkpoint")
                if time.time() - last_purge > min(s.retention_s / 10, 3600):
                    last_purge = time.time()
                    purged = await self.store.on_thread("purge", time.time() - s.retention_s)  # may be long
                    if purged:
                        logger.info("deleted %d finished jobs older than %g s", purged, s.retention_s)
            except Exception:
                logger.exception("jobs housekeeping failed")
            await asyncio.sleep(1.0)
