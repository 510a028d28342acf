"""A generator predict: the answer streams.

Input: {"chunks": [str, ...], "gate": path (optional), "fail": "before" | "after" (optional)}.
Yields the first chunk, then waits for the gate file if one is named, then yields the rest.
fail="before" raises before the first chunk, fail="after" right after it (past the gate).
"""

import time
from pathlib import Path


class Model:
    def predict(self, model_input):
        chunks, gate, fail = model_input["chunks"], model_input.get("gate"), model_input.get("fail")
        if fail == "before":
            raise RuntimeError("the tokenizer is missing")
        yield chunks[0]
        if gate:
            deadline = time.monotonic() + 60
            while not Path(gate).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the gate {gate} never opened")
                time.sleep(0.005)
        if fail == "after":
            raise RuntimeError("the decoder fell over")
        yield from chunks[1:]
