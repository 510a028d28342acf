"""Answers a model built itself: a Starlette ``Response`` its predict returned is sent as it is."""

from __future__ import annotations

from typing import Any

from kingpost.types import Receive, Scope, Send

ERROR_HEADERS = {"x-baseten-error-source": "04", "x-baseten-error-code": "700"}
"""What Truss adds to a model's own response whose status is 300 or more (the caller's error)."""


async def send_response(response: Any, scope: Scope, receive: Receive, send: Send) -> int:
    """Send ``response`` (status, headers, body or stream) and return its status."""
    status: int = response.status_code
    if status >= 300:
        response.headers.update(ERROR_HEADERS)
    await response(scope, receive, send)
    return status
