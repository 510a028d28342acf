"""A stream that stalls past runtime.streaming_read_timeout (Truss's test_streaming_read_timeout)."""
import time


class Model:
    def predict(self, model_input):
        yield "first"
        time.sleep(model_input.get("stall", 3))
        yield "late"
