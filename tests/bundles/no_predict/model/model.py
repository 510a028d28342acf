"""A Model without predict."""


class Model:
    def preprocess(self, model_input):
        return model_input
