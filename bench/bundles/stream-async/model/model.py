"""Stream, async: an async generator yielding `n` short text chunks with no pause."""


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        pass

    async def predict(self, model_input):
        for i in range(model_input["n"]):
            yield f"tok{i:05d} "
