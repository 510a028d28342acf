"""A predict that returns a generator while a postprocess is defined: a mistake found per request."""


class Model:
    def predict(self, model_input):
        return (c for c in model_input)

    def postprocess(self, model_output):
        return model_output
