"""A generator predict: the answer streams.

Input: {"chunks": [str, ...], "gates": [path, ...] (optional), "fail": "before" | "after"
(optional), "log": path (optional)}. Before chunk i (i >= 1) it waits for gates[i - 1], if
there is one, so a test decides when each chunk after the first is produced. fail="before"
raises before the first chunk, fail="after" right after it (past the first gate). With "log",
each chunk is logged as "yield <chunk>" before it is yielded, and "closed" when the generator
ends, however it ends.
"""

import time
from pathlib import Path


def _log(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def _wait_for(gate):
    deadline = time.monotonic() + 60  # a safety net: a test that forgets a gate fails, not hangs
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} never opened")
        time.sleep(0.005)


class Model:
    def predict(self, model_input):
        chunks, gates, fail = model_input["chunks"], model_input.get("gates", []), model_input.get("fail")
        log = model_input.get("log")
        try:
            if fail == "before":
                raise RuntimeError("the tokenizer is missing")
            for i, chunk in enumerate(chunks):
                if 0 < i <= len(gates):
                    _wait_for(gates[i - 1])
                if i == 1 and fail == "after":
                    raise RuntimeError("the decoder fell over")
                _log(log, f"yield {chunk}")
                yield chunk
        finally:
            _log(log, "closed")
