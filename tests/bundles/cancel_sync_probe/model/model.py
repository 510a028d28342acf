"""A sync predict that works in steps and stops once kingpost.client_disconnected() says so.

Input: {"log": path, "steps": int}. Writes "started", then "stopped after N" or "finished".
A streaming variant: {"stream": true, ...} yields a chunk per step, logging "closed" when closed.
"""

import time

import kingpost


def _log(path, line):
    with open(path, "a") as f:
        f.write(f"{line} {time.monotonic():.6f}\n")


class Model:
    def predict(self, model_input):
        if model_input.get("stream"):
            return self._stream(model_input)
        log = model_input["log"]
        _log(log, "started")
        for step in range(model_input.get("steps", 3000)):
            if kingpost.client_disconnected():
                _log(log, f"stopped after {step}")
                return None
            time.sleep(0.01)
        _log(log, "finished")
        return "done"

    def _stream(self, model_input):
        log = model_input["log"]
        _log(log, "started")
        try:
            for step in range(model_input.get("steps", 3000)):
                yield f"{step}\n"
                time.sleep(0.01)
        finally:
            _log(log, "closed")
