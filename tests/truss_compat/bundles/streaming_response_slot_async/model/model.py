"""An async predict (not annotated: a plain bundle) returns a StreamingResponse over an async generator
that yields slowly, under predict_concurrency 1: the same rule on the async predictor."""
import asyncio
import time

from starlette.responses import StreamingResponse


class Model:
    def __init__(self, **kwargs):
        self._streaming = 0
        self._predicts = 0

    async def predict(self, model_input):
        running = self._streaming
        self._predicts += 1
        n = self._predicts
        chunks, delay = int(model_input.get("chunks", 5)), float(model_input.get("delay", 0.1))

        async def body():
            self._streaming += 1
            try:
                yield f"predict {n} saw {running} streams running at {time.time():.3f}\n"
                for i in range(chunks):
                    await asyncio.sleep(delay)
                    yield f"chunk {i}\n"
            finally:
                self._streaming -= 1
        return StreamingResponse(body(), media_type="text/plain")
