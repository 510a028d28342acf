"""Sync generators behind Truss's model surface: predict and chat_completions (so not a plain bundle:
:predict and /v1/chat/completions go through the surface's routes, on predict threads).

Input, predict's or the chat completion's body (extra fields beside model and messages), one of:
- {"chunks": [str, ...], "gates": [path, ...]}: before chunk i (i >= 1) it waits for gates[i - 1].
- {"count": n, "size": k, "log": path}: n chunks of k characters; before each it writes how many it
  has yielded to the log, and "done <n>" at its end.
With "mark": path, the file is created as the generator starts (inside predict's slot).
chat_completions yields each chunk as an OpenAI chat.completion.chunk SSE event, then "data: [DONE]".
"""

import json
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


def event(i, content):
    chunk = {"id": "chatcmpl-doors", "object": "chat.completion.chunk", "created": 0, "model": "doors",
             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk)}\n\n"


class Model:
    def predict(self, model_input):
        yield from chunks(model_input)

    def chat_completions(self, model_input):
        for i, content in enumerate(chunks(model_input)):
            yield event(i, content)
        yield "data: [DONE]\n\n"
