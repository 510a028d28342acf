"""A streaming predict with a postprocess: a definition error, reported at load."""


class Model:
    def predict(self, model_input):
        yield model_input

    def postprocess(self, model_output):
        return model_output
