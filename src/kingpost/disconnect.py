"""``kingpost.client_disconnected()``: may a sync hook stop, because its caller has gone away?

A long sync ``predict`` can ask this between steps and return early; what it returns is never
sent. (An async hook needs no helper: it is cancelled when its client disconnects; a streaming
predict's generator is closed.) The predict threads set the job they serve here.
"""

from __future__ import annotations

import threading
from typing import Any

current = threading.local()
"""``current.job``: the Job a predict thread serves now (the predictor sets and clears it)."""


def client_disconnected() -> bool:
    """True when the client of the request this sync ``predict`` serves has disconnected.

    False outside a request, inside a batched predict (a batch serves several clients) and where
    the front door cannot tell (the in-process handle has no client to lose).
    """
    job: Any = getattr(current, "job", None)
    if job is None:
        return False
    if job.cancelled:
        return True
    gone = job.gone
    return bool(gone is not None and gone())
