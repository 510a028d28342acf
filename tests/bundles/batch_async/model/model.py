"""An async batched predict: one coroutine call per batch, one output per input."""

import asyncio


class Model:
    async def predict(self, items):
        await asyncio.sleep(0.001)
        if any(item == "bad" for item in items):
            return items[:-1]
        return [{"item": item, "batch": len(items)} for item in items]
