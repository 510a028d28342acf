"""load() waits for a gate file; is_healthy() is False while a "sick" file exists.

Both paths come from model_metadata, set by the test on a copy of this bundle.
"""

import time
from pathlib import Path


class Model:
    def __init__(self, config):
        meta = config["model_metadata"]
        self._gate = Path(meta["gate"])
        self._sick = Path(meta["sick"])

    def load(self):
        deadline = time.monotonic() + 60
        while not self._gate.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate {self._gate} never opened")
            time.sleep(0.005)

    def predict(self, model_input):
        return model_input

    def is_healthy(self):
        return not self._sick.exists()
