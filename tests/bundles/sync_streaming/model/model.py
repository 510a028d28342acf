"""predict is a plain generator: the output is streamed chunk by chunk."""


class Model:
    def preprocess(self, model_input):
        return int(model_input["n"])

    def predict(self, n):
        for i in range(n):
            yield f"chunk {i}\n"
