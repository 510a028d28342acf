"""server_stream with an async generator predict: the same inputs, the same chunks and log.

Input: {"chunks": [str, ...], "gates": [path, ...] (optional), "fail": "before" | "after" (optional),
"log": path (optional)}; see tests/bundles/server_stream.
"""

import asyncio
import time
from pathlib import Path


def _log(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


async def _wait_for(gate):
    deadline = time.monotonic() + 60  # a safety net: a test that forgets a gate fails, not hangs
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} never opened")
        await asyncio.sleep(0.005)


class Model:
    async def predict(self, model_input):
        chunks, gates, fail = model_input["chunks"], model_input.get("gates", []), model_input.get("fail")
        log = model_input.get("log")
        try:
            if fail == "before":
                raise RuntimeError("the tokenizer is missing")
            for i, chunk in enumerate(chunks):
                if 0 < i <= len(gates):
                    await _wait_for(gates[i - 1])
                if i == 1 and fail == "after":
                    raise RuntimeError("the decoder fell over")
                _log(log, f"yield {chunk}")
                yield chunk
        finally:
            _log(log, "closed")
