"""Only predict and postprocess: predict receives the caller's input as sent."""


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        pass

    def predict(self, model_input):
        return {"predict_saw": model_input}

    def postprocess(self, model_output):
        return {**model_output, "postprocessed": True}
