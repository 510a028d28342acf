"""For reload tests: postprocess tags each answer with its version; {"sleep": s, "mark": path} holds
preprocess s seconds, after creating the file at path (so a test knows the request is inside).

Tests edit the ``"version": 1`` in postprocess on a copy of this bundle while it serves.
"""

import time


class Model:
    def preprocess(self, model_input):
        if isinstance(model_input, dict) and model_input.get("sleep"):
            if model_input.get("mark"):
                open(model_input["mark"], "w").close()
            time.sleep(model_input["sleep"])  # on a worker thread: the request is inside this version meanwhile
        return model_input

    def predict(self, model_input):
        return model_input

    def postprocess(self, model_output):
        return {"version": 1, "input": model_output}
