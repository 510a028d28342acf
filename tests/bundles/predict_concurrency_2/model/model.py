"""Two predict slots. predict records how many calls run at once and waits at a barrier of 2.

The barrier can only be passed when two predict calls run at the same time; it times out
(BrokenBarrierError) otherwise, so a lock that is too tight fails rather than hangs.
"""

import threading


class Model:
    def __init__(self, **kwargs):
        self._lock = threading.Lock()
        self._active = 0
        self._barrier = threading.Barrier(2, timeout=10)

    def predict(self, model_input):
        with self._lock:
            self._active += 1
            seen = self._active
        try:
            self._barrier.wait()
        finally:
            with self._lock:
                self._active -= 1
        return seen
