"""Async twin of predict_concurrency_2: an async barrier of 2 inside predict."""

import asyncio


class Model:
    def __init__(self, **kwargs):
        self._active = 0
        self._arrived = 0
        self._pair = None

    async def predict(self, model_input):
        self._active += 1
        seen = self._active
        try:
            # A barrier of 2: the first of a pair waits for the second.
            if self._pair is None:
                self._pair = asyncio.Event()
                pair = self._pair
                await asyncio.wait_for(pair.wait(), 10)
            else:
                pair, self._pair = self._pair, None
                pair.set()
        finally:
            self._active -= 1
        return seen
