"""A sync generator predict for every front door's stream test (a plain bundle: the hot path).

Input, one of:
- {"chunks": [str, ...], "gates": [path, ...]}: yields the chunks; before chunk i (i >= 1) it waits
  for the file gates[i - 1], so the test decides when each chunk after the first is made.
- {"count": n, "size": k, "log": path}: yields n chunks of k characters; before each it writes how
  many it has yielded (one number, overwritten) to the log, and "done <n>" at its end, so the test
  sees how far predict ran ahead of a client that does not read.
With "mark": path, the file is created as the generator starts: inside predict's slot, so the test
sees when a request entered predict.
"""

import time
from pathlib import Path


def _wait_for(gate):
    deadline = time.monotonic() + 60  # a safety net: a test that forgets a gate fails, not hangs
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} never opened")
        time.sleep(0.005)


def _write(path, text):
    if path:
        with open(path, "w") as f:
            f.write(text)


def chunks(model_input):
    if model_input.get("mark"):
        Path(model_input["mark"]).touch()
    if "count" in model_input:
        n, chunk, log = model_input["count"], "x" * model_input["size"], model_input.get("log")
        sent = 0
        try:
            for _ in range(n):
                _write(log, str(sent))
                yield chunk
                sent += 1
        finally:
            _write(log, f"done {sent}")
        return
    gates = model_input.get("gates", [])
    for i, chunk in enumerate(model_input["chunks"]):
        if 0 < i <= len(gates):
            _wait_for(gates[i - 1])
        yield chunk


class Model:
    def predict(self, model_input):
        yield from chunks(model_input)
