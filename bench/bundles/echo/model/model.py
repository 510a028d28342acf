"""Echo: predict returns its input; measures the server's own overhead."""


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        pass

    def predict(self, model_input):
        return model_input
