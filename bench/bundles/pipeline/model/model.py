"""Pipeline: 20 ms preprocess (stands for I/O), 5 ms predict under the lock.

With predict_concurrency 1 the ceiling is 1 / 0.005 s = 200 requests/s.
"""

import time


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        pass

    def preprocess(self, model_input):
        time.sleep(0.02)
        return model_input

    def predict(self, model_input):
        time.sleep(0.005)
        return model_input
