"""predict sees its caller leave through request.is_disconnected() (Truss's
test_async_non_streaming_with_cancellation and test_async_streaming_with_cancellation)."""
import asyncio
import logging

import fastapi


class Model:
    async def predict(self, inputs, request: fastapi.Request):
        await asyncio.sleep(1.5)
        if await request.is_disconnected():
            logging.warning("Cancelled (before gen) %s.", inputs["tag"])
            return None
        return "Done"
