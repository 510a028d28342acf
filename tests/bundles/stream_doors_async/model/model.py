"""stream_doors with async generators (on the event loop): the same inputs, the same chunks.

See tests/bundles/stream_doors.
"""

import asyncio
import json
import time
from pathlib import Path


async def _wait_for(gate):
    deadline = time.monotonic() + 60  # a safety net: a test that forgets a gate fails, not hangs
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} never opened")
        await asyncio.sleep(0.005)


def _write(path, text):
    if path:
        with open(path, "w") as f:
            f.write(text)


async def chunks(model_input):
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
            await _wait_for(gates[i - 1])
        yield chunk


def event(i, content):
    chunk = {"id": "chatcmpl-doors", "object": "chat.completion.chunk", "created": 0, "model": "doors",
             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk)}\n\n"


class Model:
    async def predict(self, model_input):
        async for chunk in chunks(model_input):
            yield chunk

    async def chat_completions(self, model_input):
        i = 0
        async for content in chunks(model_input):
            yield event(i, content)
            i += 1
        yield "data: [DONE]\n\n"
