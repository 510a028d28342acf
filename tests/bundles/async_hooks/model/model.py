"""Every hook is async; each records the thread it ran on, so a test can see they ran on the loop."""

import asyncio
import threading


class Model:
    def __init__(self, **kwargs):
        self._threads = {}

    async def load(self):
        await asyncio.sleep(0)
        self._threads["load"] = threading.get_ident()

    async def preprocess(self, model_input):
        await asyncio.sleep(0)
        return {"input": model_input, "threads": {**self._threads, "preprocess": threading.get_ident()}}

    async def predict(self, model_input):
        await asyncio.sleep(0)
        model_input["threads"]["predict"] = threading.get_ident()
        return model_input

    async def postprocess(self, model_output):
        await asyncio.sleep(0)
        model_output["threads"]["postprocess"] = threading.get_ident()
        return model_output

    async def is_healthy(self):
        await asyncio.sleep(0)
        return True
