"""Answers a model built itself: a Starlette ``Response`` its predict returned is sent as it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kingpost.errors import ClientGone, KingpostError
from kingpost.predictor.held import SENT, is_streaming_response, sent
from kingpost.server.http import status_of
from kingpost.types import Receive, Scope, Send

if TYPE_CHECKING:
    from kingpost.runtime import Runtime

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


async def send_returned(runtime: Runtime, response: Any, gone: Callable[[], bool] | None,
                        scope: Scope, receive: Receive, send: Send) -> int:
    """Send what a plain bundle's predict returned (``codecs.PassThrough``).

    Its first StreamingResponse, returned after predict's slot was let go, waits for a slot in
    turn and keeps it until sent; the predictor then keeps predict's own slot for the later ones.
    """
    if is_streaming_response(response) and not hasattr(response, SENT):
        try:
            await runtime.hold_slot(response, gone)
        except ClientGone as exc:
            return status_of(exc)
        except KingpostError:  # the queue is full: sent without a slot, as before this was known
            pass
    return await send_response(response, scope, receive, send)
