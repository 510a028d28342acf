"""predict reports the thread it ran on and how many predict calls (and streams) were running.

The input is a dict: ``work`` (a callable run inside predict: sleep, wait, raise), ``chunks`` (an
iterable: predict then returns a generator over it, which counts as running until it ends).
"""

import threading


class Model:
    def __init__(self, **kwargs):
        self._lock = threading.Lock()
        self._active = 0

    def _enter(self):
        with self._lock:
            self._active += 1
            return self._active

    def _leave(self):
        with self._lock:
            self._active -= 1

    def predict(self, request):
        seen = self._enter()
        try:
            work = request.get("work")
            if work is not None:
                work()
            if "chunks" in request:
                return self._stream(request["chunks"])
            return {"thread": threading.get_ident(), "seen": seen}
        finally:
            self._leave()

    def _stream(self, chunks):
        self._enter()
        try:
            yield from chunks
        finally:
            self._leave()
