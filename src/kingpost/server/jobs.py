"""The async-jobs routes: submit, read, list and cancel durable jobs over HTTP.

- ``POST /v1/models/<name>:async_predict`` (Baseten's body shape): 201 ``{"request_id"}``; 200 for
  a repeated ``Idempotency-Key``.
- ``POST /v1/models/<name>:predict`` with ``Prefer: respond-async`` (Cog's convention; the body is
  the input): 202 ``{"request_id", "status"}``.
- ``GET /v1/jobs/<id>`` (alias ``/async_request/<id>``): status, timestamps, error, output, chunks,
  webhook attempts; ``?wait=S`` (at most 60) answers as soon as the job has ended, or after S
  seconds. ``GET /v1/jobs?status=queued&limit=100``: ``{"jobs": [...]}``, newest first.
- ``DELETE /v1/jobs/<id>`` (alias ``/async_request/<id>``): 200 cancelled; 202 a running job is
  being stopped; 409 it already ended.

Storage and running live in :mod:`kingpost.jobs`; this module only speaks HTTP. Whether jobs are
on is decided once, at startup: when off, these routes answer 404 with how to turn them on, and
the predict route does not look for ``Prefer``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from kingpost import codecs
from kingpost.errors import InputError
from kingpost.jobs.record import JobRecord, JobStatus, make_submit, parse_submit
from kingpost.jobs.settings import OFF_SENTENCE
from kingpost.server.http import JSON, error_answer, header_values, respond
from kingpost.server.routes import Route
from kingpost.types import Headers, Params, Receive, Scope, Send

if TYPE_CHECKING:
    from kingpost.jobs.service import JobService
    from kingpost.runtime import Runtime
    from kingpost.server.app import App

logger = logging.getLogger("kingpost.server")
Handler = Callable[[Scope, Receive, Send, "Runtime"], Awaitable[None]]
_LIST_LIMIT = 1000
MAX_WAIT_S = 60.0  # GET /v1/jobs/<id>?wait=S holds the request at most this long


class JobRoutes:
    """The handlers, bound to an app (for its body reading and metrics) and its job service (or None)."""

    def __init__(self, app: App, service: JobService | None) -> None:
        self.app = app
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models/{model}:async_predict", self.submit, ("POST",), "async_predict"),
            Route("/v1/jobs", self.list_jobs, ("GET",), "jobs"),
            Route("/v1/jobs/{job_id}", self.get, ("GET",), "job"),
            Route("/v1/jobs/{job_id}", self.cancel, ("DELETE",), "job"),
            Route("/async_request/{job_id}", self.get, ("GET",), "job"),
            Route("/async_request/{job_id}", self.cancel, ("DELETE",), "job"),
        ]

    def wrap_predict(self, predict: Handler) -> Handler:
        """The predict handler, plus ``Prefer: respond-async`` (only when jobs are on: one header scan).

        A plain function returning the handler's coroutine, so a plain predict pays no extra frame.
        """

        def predict_or_submit(scope: Scope, receive: Receive, send: Send, runtime: Runtime) -> Awaitable[None]:
            for name, value in scope["headers"]:
                if name == b"prefer" and b"respond-async" in value.lower():
                    return self._guard(self._submit_body, scope, receive, send, async_body=False)
            return predict(scope, receive, send, runtime)

        return predict_or_submit

    # -- handlers ----------------------------------------------------------------------------------

    async def submit(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await self._guard(self._submit_body, scope, receive, send, async_body=True)

    async def get(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await self._guard(self._get, scope, receive, send, job_id=params["job_id"])

    async def list_jobs(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await self._guard(self._list, scope, receive, send)

    async def cancel(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await self._guard(self._cancel, scope, receive, send, job_id=params["job_id"])

    # -- behind the guard --------------------------------------------------------------------------

    async def _guard(self, fn: Callable[..., Awaitable[None]], scope: Scope, receive: Receive, send: Send,
                     **kwargs: Any) -> None:
        if self.service is None:
            await _answer(send, 404, {"error": OFF_SENTENCE})
            return
        try:
            await fn(self.service, scope, receive, send, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every error becomes an answer; the server keeps serving
            status, body, headers = error_answer(exc, self.app.new_request_id(), debug=self.app.debug)
            await respond(send, status, body, extra=headers)

    async def _submit_body(self, service: JobService, scope: Scope, receive: Receive, send: Send, *,
                           async_body: bool) -> None:
        content_type, length, raw_key = header_values(scope, b"content-type", b"content-length", b"idempotency-key")
        key = raw_key.decode("latin-1") if raw_key is not None else None
        size = int(length) if length is not None and length.isdigit() else -1
        body = await self.app._read_body(receive, size, await receive())
        binary = content_type is not None and content_type != JSON and codecs.wants_msgpack(content_type)
        decoded = codecs.decode_msgpack(body) if binary else codecs.decode_json(body)
        spec = parse_submit(decoded, idempotency_key=key) if async_body else make_submit(decoded, idempotency_key=key)
        job, created = await service.submit(spec)
        location = f"/v1/jobs/{job.id}".encode()
        headers: Headers = [(b"location", location)]
        if not created:
            headers.append((b"idempotent-replayed", b"true"))
        if async_body:
            await _answer(send, 201 if created else 200, {"request_id": job.id}, headers)
        else:
            headers.append((b"preference-applied", b"respond-async"))
            await _answer(send, 202 if created else 200, {"request_id": job.id, "status": job.status.value}, headers)

    async def _get(self, service: JobService, scope: Scope, receive: Receive, send: Send, *, job_id: str) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        raw_wait = query.get("wait", ["0"])[-1]
        try:
            wait = float(raw_wait)
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= MAX_WAIT_S:
            raise InputError(f"wait: expected seconds from 0 to {MAX_WAIT_S:g}, found {raw_wait!r}.")
        job = await service.get(job_id)
        deadline = time.monotonic() + wait
        pause = 0.002
        while job is not None and not job.status.finished and time.monotonic() < deadline:
            # A long poll: the store is asked again, more rarely as time goes by (at most every 50 ms).
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            pause = min(pause * 2, 0.05)
            job = await service.get(job_id)
        if job is None:
            await _answer(send, 404, {"error": _missing(job_id)})
            return
        await _answer(send, 200, await service.view(job))

    async def _list(self, service: JobService, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        status = query.get("status", [None])[-1]
        if status is not None and status not in {s.value for s in JobStatus}:
            raise InputError(f"status: expected one of {', '.join(s.value for s in JobStatus)}, found {status!r}.")
        raw_limit = query.get("limit", ["100"])[-1]
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _LIST_LIMIT:
            raise InputError(f"limit: expected an integer from 1 to {_LIST_LIMIT}, found {raw_limit!r}.")
        jobs: list[JobRecord] = await service.recent(status, int(raw_limit))
        await _answer(send, 200, {"jobs": [job.view(output=_output(job)) for job in jobs]})

    async def _cancel(self, service: JobService, scope: Scope, receive: Receive, send: Send, *, job_id: str) -> None:
        before = await service.get(job_id)
        if before is None:
            await _answer(send, 404, {"error": _missing(job_id)})
            return
        if before.status.finished:
            await _answer(send, 409, {"error": f"job {job_id} already ended ({before.status.value}); "
                                               "there is nothing to cancel."})
            return
        job = await service.cancel(job_id)
        assert job is not None
        await _answer(send, 200 if job.status.finished else 202, await service.view(job))


def openapi_paths() -> dict[str, Any]:
    """The job routes for ``/openapi.json`` (added only when jobs are on)."""
    error = {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    job_id = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    retry = {"type": "object", "properties": {
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 10},
        "initial_delay_ms": {"type": "integer", "minimum": 0, "maximum": 10000},
        "max_delay_ms": {"type": "integer", "minimum": 0, "maximum": 60000}}}
    submit = {"type": "object", "required": ["model_input"], "properties": {
        "model_input": {}, "webhook_endpoint": {"type": "string", "format": "uri"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 2, "default": 1},
        "max_time_in_queue_seconds": {"type": "integer", "minimum": 1, "maximum": 259200, "default": 600},
        "inference_retry_config": retry}}
    job = {"description": "The job: status, timestamps, attempts, error, output, chunks, webhook attempts.",
           "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "/v1/models/{model_name}:async_predict": {"post": {
            "summary": "Submit an async job (Baseten's body; optional Idempotency-Key header)",
            "parameters": [{"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": submit}}},
            "responses": {"201": {"description": "Stored; {\"request_id\"}."},
                          "200": {"description": "A repeated Idempotency-Key: the first job's id."},
                          "400": {**error, "description": "A bad field, named."}}}},
        "/v1/jobs": {"get": {
            "summary": "List jobs, newest first",
            "parameters": [{"name": "status", "in": "query", "schema": {"type": "string"}},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100}}],
            "responses": {"200": {"description": "{\"jobs\": [...]}"}}}},
        "/v1/jobs/{job_id}": {
            "get": {"summary": "A job; with wait=S, once it has ended or after S seconds (at most 60)",
                    "parameters": [*job_id, {"name": "wait", "in": "query", "schema": {"type": "number",
                                                                                       "maximum": MAX_WAIT_S}}],
                    "responses": {"200": job, "404": {**error, "description": "No such job."}}},
            "delete": {"summary": "Cancel a job", "parameters": job_id,
                       "responses": {"200": job, "202": {**job, "description": "Running: being stopped."},
                                     "404": {**error, "description": "No such job."},
                                     "409": {**error, "description": "It already ended."}}}},
    }


def _output(job: JobRecord) -> Any:
    return codecs.decode_msgpack(job.output) if job.output is not None else None


def _missing(job_id: str) -> str:
    return f"no job {job_id} (it never existed, or it was deleted after its retention)."


async def _answer(send: Send, status: int, payload: Any, extra: Headers | None = None) -> None:
    await respond(send, status, codecs.encode_json(payload), extra=extra)
