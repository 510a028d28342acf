"""An async predict that waits until cancelled: it writes "started", then "cancelled" (or "finished").

Input: {"log": path, "seconds": float}. Used to show that a client's disconnect cancels the hook.
With "stream": true it returns an async generator that yields one chunk, then waits; "closed" is
written when the generator is closed.
"""

import asyncio
import time


def _log(path, line):
    with open(path, "a") as f:
        f.write(f"{line} {time.monotonic():.6f}\n")


class Model:
    async def predict(self, model_input):
        if model_input.get("stream"):
            return self._stream(model_input)
        log = model_input["log"]
        _log(log, "started")
        try:
            await asyncio.sleep(model_input.get("seconds", 30))
        except asyncio.CancelledError:
            _log(log, "cancelled")
            raise
        _log(log, "finished")
        return {"slept": model_input.get("seconds", 30)}

    async def _stream(self, model_input):
        log = model_input["log"]
        _log(log, "started")
        try:
            yield "first\n"
            await asyncio.sleep(model_input.get("seconds", 30))
            yield "never\n"
        finally:
            _log(log, "closed")
