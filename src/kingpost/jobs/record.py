"""What a job is: its status, the row the store keeps, and the submit request that makes one.

A submit carries Baseten's ``/async_predict`` body shape::

    {"model_input": ..., "webhook_endpoint": "https://...", "priority": 0-2 (lower runs first, default 1),
     "max_time_in_queue_seconds": 1-259200 (default 600),
     "inference_retry_config": {"max_attempts": 1-10, "initial_delay_ms": 0-10000, "max_delay_ms": 0-60000}}
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from kingpost import defaults
from kingpost.errors import InputError


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"  # it was running when its worker died, and reruns were turned off

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


FINISHED = tuple(s.value for s in JobStatus if s.finished)

DEFAULT_PRIORITY = defaults.JOB_PRIORITY
DEFAULT_QUEUE_SECONDS = defaults.JOB_QUEUE_S
MAX_QUEUE_SECONDS = 72 * 3600


@dataclass(frozen=True)
class Retry:
    """``inference_retry_config``: attempts in all (1 means no retry) and the backoff between them."""

    max_attempts: int = 1
    initial_delay_ms: int = 1000
    max_delay_ms: int = 5000

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
        return float(min(self.initial_delay_ms * 2 ** max(attempt - 1, 0), self.max_delay_ms)) / 1000


@dataclass(frozen=True)
class Submit:
    """One validated submit."""

    model_input: Any
    priority: int = DEFAULT_PRIORITY
    max_time_in_queue_seconds: float = DEFAULT_QUEUE_SECONDS
    retry: Retry = field(default_factory=Retry)
    webhook_endpoint: str | None = None
    idempotency_key: str | None = None


def parse_submit(body: Any, *, idempotency_key: str | None = None) -> Submit:
    """Validate an ``/async_predict`` body; a bad field is an InputError naming it."""
    if not isinstance(body, dict):
        raise InputError(f"expected a JSON object with 'model_input', found {type(body).__name__}.")
    unknown = set(body) - {"model_input", "webhook_endpoint", "priority", "max_time_in_queue_seconds",
                           "inference_retry_config"}
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}; expected model_input, webhook_endpoint, "
                         "priority, max_time_in_queue_seconds, inference_retry_config.")
    if "model_input" not in body:
        raise InputError("the body has no 'model_input'; expected {\"model_input\": ...}.")
    retry = body.get("inference_retry_config")
    return make_submit(body["model_input"], priority=body.get("priority"),
                       max_time_in_queue_seconds=body.get("max_time_in_queue_seconds"),
                       retry=retry, webhook_endpoint=body.get("webhook_endpoint"),
                       idempotency_key=idempotency_key)


def make_submit(model_input: Any, *, priority: Any = None, max_time_in_queue_seconds: Any = None,
                retry: Any = None, webhook_endpoint: Any = None, idempotency_key: str | None = None) -> Submit:
    """A :class:`Submit` from loose values (None means the default); InputError names a bad one."""
    return Submit(
        model_input,
        priority=_int("priority", priority, DEFAULT_PRIORITY, 0, 2),
        max_time_in_queue_seconds=_int("max_time_in_queue_seconds", max_time_in_queue_seconds,
                                       DEFAULT_QUEUE_SECONDS, 1, MAX_QUEUE_SECONDS),
        retry=_retry(retry),
        webhook_endpoint=_webhook(webhook_endpoint),
        idempotency_key=_key(idempotency_key),
    )


def _int(name: str, value: Any, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{name}: expected an integer from {low} to {high}, found {value!r}.")
    return value


def _retry(value: Any) -> Retry:
    if value is None:
        return Retry()
    if isinstance(value, Retry):
        return value
    if not isinstance(value, dict):
        raise InputError(f"inference_retry_config: expected an object, found {type(value).__name__}.")
    unknown = set(value) - {"max_attempts", "initial_delay_ms", "max_delay_ms"}
    if unknown:
        raise InputError(f"inference_retry_config: unknown field(s) {', '.join(sorted(unknown))}; expected "
                         "max_attempts, initial_delay_ms, max_delay_ms.")
    return Retry(_int("inference_retry_config.max_attempts", value.get("max_attempts"), 1, 1, 10),
                 _int("inference_retry_config.initial_delay_ms", value.get("initial_delay_ms"), 1000, 0, 10_000),
                 _int("inference_retry_config.max_delay_ms", value.get("max_delay_ms"), 5000, 0, 60_000))


def _webhook(value: Any) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"webhook_endpoint: expected an http(s) URL, found {value!r}.")
    return str(value)


def _key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 255:
        raise InputError("Idempotency-Key: expected 1 to 255 characters.")
    return value


def new_id() -> str:
    """A job id: time-ordered (so ids sort by submit time) and unguessable."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


@dataclass
class JobRecord:
    """One job as stored. ``input``/``output`` are msgpack bytes (numpy arrays survive the trip)."""

    id: str
    model: str
    status: JobStatus
    priority: int
    input: bytes
    created_at: float
    expires_at: float
    max_attempts: int
    initial_delay_ms: int
    max_delay_ms: int
    output: bytes | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    run_after: float = 0.0
    lease_owner: str | None = None
    lease_until: float | None = None
    cancel_requested: bool = False
    idempotency_key: str | None = None
    webhook_endpoint: str | None = None
    webhook_state: str | None = None  # None (no webhook), pending, delivered, failed
    webhook_next_at: float | None = None
    webhook_log: list[dict[str, Any]] = field(default_factory=list)
    streamed: bool = False

    @property
    def retry(self) -> Retry:
        return Retry(self.max_attempts, self.initial_delay_ms, self.max_delay_ms)

    def view(self, *, output: Any = None, chunks: list[Any] | None = None) -> dict[str, Any]:
        """The job as the HTTP API and :meth:`JobHandle.status` show it."""
        out: dict[str, Any] = {
            "request_id": self.id, "model": self.model, "status": self.status.value, "priority": self.priority,
            "created_at": iso(self.created_at), "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at), "expires_at": iso(self.expires_at),
            "attempts": self.attempts, "max_attempts": self.max_attempts, "error": self.error,
        }
        if self.cancel_requested and not self.status.finished:
            out["cancel_requested"] = True
        if self.status is JobStatus.SUCCEEDED:
            out["output"] = output
        if chunks is not None:
            out["chunks"] = chunks
        if self.webhook_endpoint is not None:
            out["webhook"] = {"endpoint": self.webhook_endpoint, "state": self.webhook_state,
                              "attempts": self.webhook_log}
        return out


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
