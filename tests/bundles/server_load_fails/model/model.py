"""load() waits for a gate file, then fails: the test sees the server loading, then failed."""

import time
from pathlib import Path


class Model:
    def __init__(self, config):
        self._gate = Path(config["model_metadata"]["gate"])

    def load(self):
        deadline = time.monotonic() + 60
        while not self._gate.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        raise FileNotFoundError("weights.bin is missing from data/")

    def predict(self, model_input):
        return model_input
