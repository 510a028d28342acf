"""model.py does not parse."""


class Model:
    def predict(self, model_input)
        return model_input
