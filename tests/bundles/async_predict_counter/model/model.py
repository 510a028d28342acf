"""Async twin of predict_counter."""

import asyncio


class Model:
    def __init__(self, **kwargs):
        self._active = 0

    async def predict(self, model_input):
        self._active += 1
        seen = self._active
        await asyncio.sleep(0.002)
        self._active -= 1
        return seen
