"""Webhook delivery: sign a finished job's result and POST it, retrying with backoff.

The body is JSON: ``{"request_id", "model", "type": "async_request_completed", "time", "status",
"data" (the output, or null), "errors": [{"code", "message"}]}``. Two headers sign it::

    X-Kingpost-Timestamp: <unix seconds>
    X-Kingpost-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

A receiver recomputes the HMAC over the same bytes, compares in constant time, and refuses a
timestamp far from its clock (a replay). Delivery is at least once: a 2xx answer settles it; any
other answer, a refused connection or a timeout is retried after ``webhook_delay_s`` doubling
(capped at 300 s) until ``webhook_attempts``. A receiver should dedupe by ``request_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import time
from typing import Any
from urllib.parse import urlsplit

from kingpost import codecs, defaults
from kingpost.jobs.record import JobRecord, JobStatus, iso

SIGNATURE_HEADER = "X-Kingpost-Signature"
TIMESTAMP_HEADER = "X-Kingpost-Timestamp"
MAX_DELAY_S = defaults.WEBHOOK_MAX_DELAY_S


def payload(job: JobRecord, output: Any) -> bytes:
    errors = [] if job.status is JobStatus.SUCCEEDED else [{"code": job.status.value, "message": job.error}]
    return codecs.encode_json({
        "request_id": job.id, "model": job.model, "type": "async_request_completed", "time": iso(time.time()),
        "status": job.status.value, "data": output if job.status is JobStatus.SUCCEEDED else None,
        "errors": errors,
    })


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300) -> bool:
    """What a receiver does (kingpost's own tests use it): the HMAC matches and the timestamp is recent."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and any(hmac.compare_digest(sign(secret, timestamp, body), s.strip()) for s in signature.split(","))


def post(url: str, body: bytes, secret: str | None, timeout: float) -> tuple[int | None, str | None]:
    """POST once (blocking; run on a thread): (status, None) on an answer, (None, reason) on no answer.

    Redirects are not followed: a signed result goes only where the submit said.
    """
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    headers = {"Content-Type": "application/json", "User-Agent": "kingpost-webhook"}
    if secret is not None:
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = conn_cls(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        answer = conn.getresponse()
        answer.read(65536)
        return answer.status, None
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def next_delay(attempts: int, first_delay_s: float) -> float:
    return float(min(first_delay_s * 2 ** max(attempts - 1, 0), MAX_DELAY_S))
