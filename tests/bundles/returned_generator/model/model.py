"""Truss's canonical streaming example: a plain predict that *returns* a generator."""


class Model:
    def predict(self, model_input):
        def tokens():
            for word in model_input["text"].split():
                yield word + " "

        if model_input.get("stream", True):
            return tokens()
        return {"words": len(model_input["text"].split())}
