"""The streams of the stream_doors bundles (their config.yaml lists this directory under
external_package_dirs), for every front door's stream test.

Input, one of:
- {"chunks": [str, ...], "gates": [path, ...]}: yields the chunks; before chunk i (i >= 1) it waits
  for the file gates[i - 1], so the test decides when each chunk after the first is made.
- {"count": n, "size": k, "log": path}: yields n chunks of k characters; before each it writes how
  many it has yielded (one number, overwritten) to the log, and "done <n>" at its end, so the test
  sees how far predict ran ahead of a client that does not read.
With "mark": path, the file is created as the generator starts: inside predict's slot, so the test
sees when a request entered predict.
"""

import asyncio
import json
import time
from pathlib import Path

GATE_DEADLINE_S = 60  # a safety net: a test that forgets a gate fails, not hangs


def _write(path, text):
    if path:
        with open(path, "w") as f:
            f.write(text)


def _plan(model_input):
    """(the gate to wait for first, or None; the chunk), in order."""
    if model_input.get("mark"):
        Path(model_input["mark"]).touch()
    if "count" in model_input:
        n, chunk, log = model_input["count"], "x" * model_input["size"], model_input.get("log")
        sent = 0
        try:
            for _ in range(n):
                _write(log, str(sent))
                yield None, chunk
                sent += 1
        finally:
            _write(log, f"done {sent}")
        return
    gates = model_input.get("gates", [])
    for i, chunk in enumerate(model_input["chunks"]):
        yield (gates[i - 1] if 0 < i <= len(gates) else None), chunk


def _gate_open(gate, deadline):
    if Path(gate).exists():
        return True
    if time.monotonic() > deadline:
        raise TimeoutError(f"the gate {gate} never opened")
    return False


def chunks(model_input):
    """The chunks, for a sync generator (a gate is waited for on this thread)."""
    plan = _plan(model_input)
    try:
        for gate, chunk in plan:
            deadline = time.monotonic() + GATE_DEADLINE_S
            while gate is not None and not _gate_open(gate, deadline):
                time.sleep(0.005)
            yield chunk
    finally:
        plan.close()


async def achunks(model_input):
    """The chunks, for an async generator (a gate is waited for without blocking the loop)."""
    plan = _plan(model_input)
    try:
        for gate, chunk in plan:
            deadline = time.monotonic() + GATE_DEADLINE_S
            while gate is not None and not _gate_open(gate, deadline):
                await asyncio.sleep(0.005)
            yield chunk
    finally:
        plan.close()


def event(content):
    """One OpenAI chat.completion.chunk SSE event carrying ``content``."""
    chunk = {"id": "chatcmpl-doors", "object": "chat.completion.chunk", "created": 0, "model": "doors",
             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk)}\n\n"
