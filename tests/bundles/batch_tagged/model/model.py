"""Batched predict that reports, for each item, the size of the batch it ran in."""

import threading
import time


class Model:
    def __init__(self):
        self.batch_sizes = []
        self._active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def preprocess(self, request):
        return {"tag": request["tag"], "value": request["value"]}

    def predict(self, items):
        with self._lock:
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        self.batch_sizes.append(len(items))
        time.sleep(0.005)  # stands for one vectorized call
        out = [{"tag": item["tag"], "double": item["value"] * 2, "batch": len(items)} for item in items]
        with self._lock:
            self._active -= 1
        return out

    def postprocess(self, output):
        return {**output, "max_active": self.max_active}
