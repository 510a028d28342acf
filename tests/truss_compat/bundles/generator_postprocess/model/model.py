"""A generator postprocess streams outside the predict lock (Truss's test_streaming_postprocess)."""
import time


class Model:
    def predict(self, request):
        return ["0", "1"]

    def postprocess(self, response):
        for item in response:
            time.sleep(0.5)
            yield item + " modified"
