"""Async preprocess and postprocess each wait until ``parties`` requests are inside them."""

import asyncio


class _Barrier:
    def __init__(self, parties):
        self._parties, self._count, self._event = parties, 0, None

    async def wait(self):
        if self._event is None:
            self._event = asyncio.Event()
        self._count += 1
        if self._count == self._parties:
            self._event.set()
        await asyncio.wait_for(self._event.wait(), 20)


class Model:
    def __init__(self, config):
        parties = config["model_metadata"]["parties"]
        self._pre, self._post = _Barrier(parties), _Barrier(parties)

    async def preprocess(self, model_input):
        await self._pre.wait()
        return model_input

    async def predict(self, model_input):
        return model_input

    async def postprocess(self, model_output):
        await self._post.wait()
        return model_output
