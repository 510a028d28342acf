"""Every hook passes its input through: the smallest complete Model."""


class Model:
    def __init__(self, **kwargs):
        self._loaded = False

    def load(self):
        self._loaded = True

    def preprocess(self, model_input):
        return model_input

    def predict(self, model_input):
        assert self._loaded, "predict ran before load"
        return model_input

    def postprocess(self, model_output):
        return model_output
