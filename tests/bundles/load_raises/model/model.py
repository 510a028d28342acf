"""load() fails: the runtime goes to FAILED with one sentence."""


class Model:
    def load(self):
        raise FileNotFoundError("weights.bin is not in data/")

    def predict(self, model_input):
        return model_input
