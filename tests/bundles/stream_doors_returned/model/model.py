"""A plain sync predict that returns its stream instead of being a generator (Truss's examples do both).

Input: stream_doors_plain's ({"chunks", "gates"} or {"count", "size", "log"}, and "mark"); predict
returns the generator of those chunks, or with "response": true a Starlette StreamingResponse of
them (text/plain). {"where": true} answers the name of the thread predict ran on, at once: a test
sees when predict runs on the event loop (kingpost calls a predict that fast there).
"""

import threading
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
        if model_input.get("where"):
            return threading.current_thread().name
        if model_input.get("response"):
            from starlette.responses import StreamingResponse

            return StreamingResponse(chunks(model_input), media_type="text/plain")
        return chunks(model_input)
