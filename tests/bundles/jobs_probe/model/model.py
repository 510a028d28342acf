"""A small model for the async-jobs tests: echoes, sleeps, logs each run, fails on request, waits on a gate.

Input is a JSON object:
    {"i": n}                 any value; the output is {"echo": <input>, "pid": <process id>}
    {"sleep_ms": ms}         predict sleeps that long first
    {"log": path}            each predict appends "<i>" to path (so a test counts runs per job)
    {"fail": path, "times": k}  predict raises while path holds fewer than k lines (it appends one per failure)
    {"gate": path}           predict waits (up to 30 s) until path exists
"""

import os
import time
from pathlib import Path


class Model:
    def predict(self, model_input):
        if isinstance(model_input, dict):
            if "log" in model_input:
                with open(model_input["log"], "a") as f:
                    f.write(f"{model_input.get('i')}\n")
            if "gate" in model_input:
                deadline = time.monotonic() + 30
                while not Path(model_input["gate"]).exists() and time.monotonic() < deadline:
                    time.sleep(0.005)
            if model_input.get("sleep_ms"):
                time.sleep(model_input["sleep_ms"] / 1000)
            if "fail" in model_input:
                path = Path(model_input["fail"])
                failures = len(path.read_text().splitlines()) if path.exists() else 0
                if failures < model_input.get("times", 1):
                    with path.open("a") as f:
                        f.write("failed\n")
                    raise RuntimeError(f"failure {failures + 1} on request")
        return {"echo": model_input, "pid": os.getpid()}
