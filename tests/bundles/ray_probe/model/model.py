"""Answers {"tag", "pid", "loads", "max_in_predict", "max_in_preprocess"} for an input {"tag": ...}.

``max_in_predict`` is the most callers this process ever saw inside predict at once: with the
predict lock it stays 1. ``max_in_preprocess`` shows that requests did overlap around it.
"""

import os
import threading
import time

LOADS = 0


class Model:
    def __init__(self, **kwargs):
        self._guard = threading.Lock()
        self._in = {"preprocess": 0, "predict": 0}
        self._max = {"preprocess": 0, "predict": 0}

    def load(self):
        global LOADS
        LOADS += 1

    def _enter(self, stage):
        with self._guard:
            self._in[stage] += 1
            self._max[stage] = max(self._max[stage], self._in[stage])

    def _leave(self, stage):
        with self._guard:
            self._in[stage] -= 1

    def preprocess(self, model_input):
        self._enter("preprocess")
        time.sleep(0.01)
        self._leave("preprocess")
        return model_input

    def predict(self, model_input):
        self._enter("predict")
        time.sleep(0.002)
        self._leave("predict")
        return {"tag": model_input["tag"], "pid": os.getpid(), "loads": LOADS,
                "max_in_predict": self._max["predict"], "max_in_preprocess": self._max["preprocess"]}
