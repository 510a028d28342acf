"""predict logs each call to a file and can hold until the test creates a gate file.

Input: {"tag": str, "log": path (optional), "gate": path (optional)}. predict appends
"start <tag> <pid>" to the log, waits for the gate file to exist, appends "end <tag> <pid>"
and returns {"tag": tag, "pid": <the serving process id>}. The log tells a test which
predicts ran, in which process, and that one is running now.
"""

import os
import time
from pathlib import Path


def _log(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


class Model:
    def predict(self, model_input):
        tag, log, gate = model_input["tag"], model_input.get("log"), model_input.get("gate")
        pid = os.getpid()
        _log(log, f"start {tag} {pid}")
        if gate:
            deadline = time.monotonic() + 60  # a safety net: a test that forgets its gate fails, not hangs
            while not Path(gate).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the gate {gate} never opened")
                time.sleep(0.005)
        _log(log, f"end {tag} {pid}")
        return {"tag": tag, "pid": pid}
