"""Loads fine but reports itself unhealthy."""


class Model:
    def predict(self, model_input):
        return model_input

    def is_healthy(self):
        return False
