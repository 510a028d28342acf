"""Answers a model built itself: a Starlette ``Response`` its predict returned is sent as it is."""

from __future__ import annotations

from typing import Any

from kingpost.predictor.held import sent
from kingpost.types import Receive, Scope, Send

ERROR_HEADERS = {"x-baseten-error-source": "04", "x-baseten-error-code": "700"}
"""What Truss adds to a model's own response whose status is 300 or more (the caller's error)."""


async def send_response(response: Any, scope: Scope, receive: Receive, send: Send) -> int:
    """Send ``response`` (status, headers, body or stream) and return its status.

    A StreamingResponse that holds a predict slot frees it here, once sent, failed or abandoned.
    """
    try:
        status: int = response.status_code
        if status >= 300:
            response.headers.update(ERROR_HEADERS)
        await response(scope, receive, send)
    finally:
        sent(response)
    return status
