"""Counters that prove the predict lock over HTTP, without timing.

{"role": "hold"}: predict marks itself running, waits until the overlap requests below have met
in preprocess, then gives any other predict linger_s to enter alongside it (with one slot, none can).
{"role": "overlap", ...}: preprocess waits until a predict is running, then at a barrier of
``parties``; the barrier passes only when that many preprocesses are inside it at once. At that
moment (the barrier's action, before any is released) the model records how many predicts are
running; each overlap answer carries it ("predicting_at_barrier").
Every answer carries "max_predicts": the most predicts that were ever running at once.
"""

import threading


class Model:
    def __init__(self, config):
        meta = config["model_metadata"]
        self._linger = float(meta["linger_s"])
        # Broken (500) rather than hung when the preprocesses never overlap.
        self._barrier = threading.Barrier(meta["parties"], action=self._all_met, timeout=30)
        self._lock = threading.Lock()
        self._predicting = 0
        self._max_predicts = 0
        self._holding = threading.Event()
        self._met = threading.Event()
        self._second = threading.Event()
        self._predicting_at_barrier = None

    def preprocess(self, model_input):
        if model_input["role"] == "overlap":
            if not self._holding.wait(30):
                raise TimeoutError("no predict started")
            self._barrier.wait()
            model_input["predicting_at_barrier"] = self._predicting_at_barrier
        return model_input

    def _all_met(self):
        # Every party is inside the barrier, and the hold predict cannot return before _met is set.
        with self._lock:
            self._predicting_at_barrier = self._predicting
        self._met.set()

    def predict(self, model_input):
        with self._lock:
            self._predicting += 1
            self._max_predicts = max(self._max_predicts, self._predicting)
        try:
            if model_input["role"] == "hold":
                self._holding.set()
                if not self._met.wait(30):
                    raise TimeoutError("the overlap requests never met in preprocess")
                self._second.wait(self._linger)
            else:
                self._second.set()
            with self._lock:
                return {**model_input, "max_predicts": self._max_predicts}
        finally:
            with self._lock:
                self._predicting -= 1
