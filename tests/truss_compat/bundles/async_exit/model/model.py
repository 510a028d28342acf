"""An async model used in process; nothing may be reported pending at interpreter exit."""


class Model:
    async def predict(self, model_input):
        return model_input
