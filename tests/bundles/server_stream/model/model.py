"""A generator predict: the answer streams.

Input: {"chunks": [str, ...], "gate": path (optional), "fail": "before" | "after" (optional),
"log": path (optional)}. Yields the first chunk, then waits for the gate file if one is named,
then yields the rest. fail="before" raises before the first chunk, fail="after" right after it
(past the gate). With "log", each chunk is logged as "yield <chunk>" before it is yielded, and
"closed" when the generator ends, however it ends.
"""

import time
from pathlib import Path


def _log(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


class Model:
    def predict(self, model_input):
        chunks, gate, fail = model_input["chunks"], model_input.get("gate"), model_input.get("fail")
        log = model_input.get("log")
        try:
            if fail == "before":
                raise RuntimeError("the tokenizer is missing")
            _log(log, f"yield {chunks[0]}")
            yield chunks[0]
            if gate:
                deadline = time.monotonic() + 60
                while not Path(gate).exists():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the gate {gate} never opened")
                    time.sleep(0.005)
            if fail == "after":
                raise RuntimeError("the decoder fell over")
            for chunk in chunks[1:]:
                _log(log, f"yield {chunk}")
                yield chunk
        finally:
            _log(log, "closed")
