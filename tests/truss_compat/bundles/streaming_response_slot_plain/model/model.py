"""predict (not annotated: a plain bundle, found out when it first returns one) returns a slow
StreamingResponse under predict_concurrency 1.

Each stream's first line says how many other streams were still being produced when its predict ran:
Truss holds the predict slot until the response has been sent, so that is always 0.
"""
import threading
import time

from starlette.responses import StreamingResponse


class Model:
    def __init__(self, **kwargs):
        self._lock = threading.Lock()
        self._streaming = 0
        self._predicts = 0

    def predict(self, model_input):
        with self._lock:
            running = self._streaming
            self._predicts += 1
            n = self._predicts
        chunks, delay = int(model_input.get("chunks", 5)), float(model_input.get("delay", 0.1))

        def body():
            with self._lock:
                self._streaming += 1
            try:
                yield f"predict {n} saw {running} streams running at {time.time():.3f}\n"
                for i in range(chunks):
                    time.sleep(delay)
                    yield f"chunk {i}\n"
            finally:
                with self._lock:
                    self._streaming -= 1
        return StreamingResponse(body(), media_type="text/plain")
