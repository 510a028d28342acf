"""Sleeps under the predict lock for model_input["sleep_s"] seconds, then answers who it is and what it got."""

import time


class Model:
    def predict(self, model_input):
        time.sleep(float(model_input["sleep_s"]))
        return {"model": "sleepy", "n": model_input["n"]}
