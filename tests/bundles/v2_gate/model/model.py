"""server_gate for V2 infers: each input is a one-element BYTES tensor.

Inputs: "tag", and optionally "log" and "gate" (paths). predict appends "start <tag>" to the log,
waits (at most 60 s) for the gate file to exist, appends "end <tag>" and returns {"tag": [tag]}.
"""

import time
from pathlib import Path


def _text(inputs, name):
    value = inputs.get(name)
    if value is None:
        return None
    item = value.reshape(-1)[0]
    return item.decode() if isinstance(item, bytes) else str(item)


def _log(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


class Model:
    def predict(self, model_input):
        inputs = model_input if isinstance(model_input, dict) else {"tag": model_input}
        tag, log, gate = _text(inputs, "tag"), _text(inputs, "log"), _text(inputs, "gate")
        _log(log, f"start {tag}")
        if gate:
            deadline = time.monotonic() + 60  # a safety net: a test that forgets its gate fails, not hangs
            while not Path(gate).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the gate {gate} never opened")
                time.sleep(0.005)
        _log(log, f"end {tag}")
        return {"tag": [tag]}
