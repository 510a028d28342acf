"""A Starlette ``StreamingResponse`` returned by predict keeps its predict slot until it is sent.

Truss's rule (``model_wrapper.py``): the predict semaphore is released when the response object
is finalized, i.e. once the server is done with it: its body sent, its client gone, or its stream
failed. Here the slot's worker waits for ``release``, which :func:`kingpost.server.responses.send_response`
calls when sending ends, and which a ``weakref.finalize`` calls for a response never sent (its
request cancelled, a postprocess refusing it).

Only predictors told so at load (:meth:`hold_responses`) look at predict's output for this: a
plain bundle's hot path never does.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from kingpost.codecs import is_response

SENT = "kingpost_sent"
"""The attribute of a held response: a finalizer that frees its slot, run once (sent or collected)."""


class Held:
    """A predict job's input that calls no predict: its slot is taken to send ``response`` (a plain
    bundle's first StreamingResponse, whose own predict had already let go of its slot)."""

    __slots__ = ("response",)

    def __init__(self, response: Any) -> None:
        self.response = response


def is_streaming_response(value: Any) -> bool:
    """Whether ``value`` is a Starlette StreamingResponse (looked up only once Starlette is imported)."""
    return is_response(value, "StreamingResponse")


def hold(response: Any, release: Callable[[], None]) -> None:
    """Call ``release`` once ``response`` has been sent, or is collected unsent, whichever is first."""
    setattr(response, SENT, weakref.finalize(response, release))  # release holds no reference to it


def sent(response: Any) -> None:
    """``response`` was sent (or failed, or its client left): free the slot it holds, if any."""
    finalizer = getattr(response, SENT, None)
    if finalizer is not None:
        finalizer()
