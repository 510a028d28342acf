"""Async twin of stream_probe: ``chunks`` is an async iterable."""


class Model:
    async def predict(self, model_input):
        log = model_input["log"]
        log.append(("start", model_input["id"]))
        try:
            async for chunk in model_input["chunks"]:
                yield chunk
        finally:
            log.append(("end", model_input["id"]))
