"""The one table that turns kingpost's domain errors into HTTP answers."""

from __future__ import annotations

import logging

from kingpost.codecs import encode_json
from kingpost.errors import (
    ClientGone,
    DeadlineExceeded,
    InputError,
    KingpostError,
    ModelError,
    ModelLoadError,
    NotReadyError,
    PayloadTooLargeError,
    QueueFullError,
    describe,
)
from kingpost.types import Headers

logger = logging.getLogger("kingpost.server")

# Most specific first: the first matching class decides. Readiness (NotReadyError while loading or
# unhealthy, ModelLoadError once loading failed), a request stopped by the shutdown (NotReadyError)
# and a client that left (ClientGone: logged as 499, nothing is sent) are answered from here too.
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (PayloadTooLargeError, 413),
    (InputError, 400),
    (NotReadyError, 503),
    (QueueFullError, 503),
    (DeadlineExceeded, 504),
    (ClientGone, 499),
    (ModelError, 500),
    (ModelLoadError, 500),
    (KingpostError, 500),
)
RETRY_AFTER = (NotReadyError, QueueFullError)
NOT_FOUND, METHOD_NOT_ALLOWED = 404, 405


def status_of(exc: BaseException) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_answer(exc: BaseException, request_id: str, *, debug: bool) -> tuple[int, bytes, Headers]:
    """Status, JSON body ``{"error": "<one sentence>"}`` and extra headers for an error."""
    status = status_of(exc)
    headers: Headers = []
    if isinstance(exc, RETRY_AFTER):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    if isinstance(exc, ModelError):
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        logger.error("request %s: %s", request_id, exc, exc_info=cause)
        message = (f"{exc} (request {request_id})." if debug
                   else f"the model's {exc.stage} raised an exception (request {request_id}).")
    elif not isinstance(exc, KingpostError):  # a bug: its text may reveal internals
        logger.error("request %s: internal error", request_id, exc_info=exc)
        message = (f"internal error: {describe(exc)} (request {request_id})." if debug
                   else f"internal error (request {request_id}).")
    else:
        message = str(exc)
    return status, encode_json({"error": message}), headers
