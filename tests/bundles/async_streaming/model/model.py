"""predict is an async generator: the output is streamed chunk by chunk."""

import asyncio


class Model:
    async def preprocess(self, model_input):
        return int(model_input["n"])

    async def predict(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield f"chunk {i}\n"
