"""The one table that turns kingpost's domain errors into HTTP answers, and the helpers that send them."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from kingpost.codecs import encode_json
from kingpost.errors import (
    ClientGone,
    DeadlineExceeded,
    InputError,
    KingpostError,
    MethodNotFoundError,
    ModelError,
    ModelLoadError,
    ModelNotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    QueueFullError,
    UnsupportedMediaType,
    describe,
)
from kingpost.types import Headers, Scope, Send

logger = logging.getLogger("kingpost.server")

# The answer to a request the server stopped past --grace-period (:predict and V2 infer).
SHUTTING_DOWN = NotReadyError("the server is shutting down and stopped this request; retry.")

# Most specific first: the first matching class decides. Readiness (NotReadyError while loading or
# unhealthy, ModelLoadError once loading failed), a request stopped by the shutdown (NotReadyError)
# and a client that left (ClientGone: logged as 499, nothing is sent) are answered from here too.
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (PayloadTooLargeError, 413),
    (UnsupportedMediaType, 415),
    (InputError, 400),
    (ModelNotFoundError, 404),
    (NotReadyError, 503),
    (QueueFullError, 503),
    (DeadlineExceeded, 504),
    (ClientGone, 499),
    (MethodNotFoundError, 404),
    (ModelError, 500),
    (ModelLoadError, 500),
    (KingpostError, 500),
)
RETRY_AFTER = (NotReadyError, QueueFullError)
NOT_FOUND, METHOD_NOT_ALLOWED = 404, 405

JSON = b"application/json"


# Truss's error headers (``_truss_common/errors.py``): its server is source 04; 700 means the
# caller's error, 600 a downstream (model or server state) one, 500 an unexpected one.
ERROR_SOURCE = (b"x-baseten-error-source", b"04")
CLIENT_ERROR = (b"x-baseten-error-code", b"700")
DOWNSTREAM_ERROR = (b"x-baseten-error-code", b"600")
UNEXPECTED_ERROR = (b"x-baseten-error-code", b"500")
NOT_READY_HEADERS: Headers = [ERROR_SOURCE, DOWNSTREAM_ERROR]


def status_of(exc: BaseException) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            own = getattr(exc, "status", None)  # a hook's HTTPException(status_code=...) keeps its status
            return own if isinstance(own, int) and status in (400, 500) else status
    return 500


def truss_error_headers(exc: BaseException) -> Headers:
    """The two headers Truss's server puts on every error answer."""
    if isinstance(exc, ModelError | NotReadyError | QueueFullError | DeadlineExceeded) or (
            isinstance(exc, InputError) and getattr(exc.__cause__, "status_code", None) is not None):
        return [ERROR_SOURCE, DOWNSTREAM_ERROR]
    if isinstance(exc, InputError | MethodNotFoundError):
        return [ERROR_SOURCE, CLIENT_ERROR]
    return [ERROR_SOURCE, UNEXPECTED_ERROR]


def error_answer(exc: BaseException, request_id: str, *, debug: bool,
                 redact: Callable[[str], str] = str) -> tuple[int, bytes, Headers]:
    """Status, JSON body ``{"error": "<one sentence>"}`` and extra headers for an error.

    What is logged passes through ``redact`` first: a model's exception text may hold a secret.
    """
    status = status_of(exc)
    headers = truss_error_headers(exc)
    if isinstance(exc, RETRY_AFTER):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    if isinstance(exc, ModelError) and exc.status is not None:  # the message is meant for the caller
        logger.error("request %s: %s", request_id, exc, exc_info=exc.__cause__ or exc)
        message = str(exc)
    elif isinstance(exc, ModelError):
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        logger.error("request %s: %s\n%s", request_id, redact(str(exc)), redact(_traceback(cause)))
        message = (f"{exc} (request {request_id})." if debug
                   else f"the model's {exc.stage} raised an exception (request {request_id}).")
    elif not isinstance(exc, KingpostError):  # a bug: its text may reveal internals
        logger.error("request %s: internal error\n%s", request_id, redact(_traceback(exc)))
        message = (f"internal error: {describe(exc)} (request {request_id})." if debug
                   else f"internal error (request {request_id}).")
    else:
        message = str(exc)
    return status, encode_json({"error": message}), headers


async def respond(send: Send, status: int, body: bytes, content_type: bytes = JSON,
                  extra: Headers | None = None) -> None:
    """Send a whole response: status, Content-Type, Content-Length and any ``extra`` headers."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> bytes | None:
    """One request header (the last, if repeated); for the rare paths, the hot one scans once itself."""
    found = None
    for key, value in scope["headers"]:
        if key == name:
            found = value
    return found


def header_values(scope: Scope, *names: bytes) -> tuple[bytes | None, ...]:
    """Several request headers in one pass, in the order named (None where absent; the last, if repeated)."""
    found: list[bytes | None] = [None] * len(names)
    for key, value in scope["headers"]:
        if key in names:
            found[names.index(key)] = value
    return tuple(found)


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip("\n")
