"""The constructor fails."""


class Model:
    def __init__(self, **kwargs):
        raise KeyError("api_url")

    def predict(self, model_input):
        return model_input
