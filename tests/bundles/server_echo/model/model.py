"""Echo for the HTTP tests: the input comes back, numpy values on request, failures on request.

Input is a JSON object or a msgpack map:
    {"invalid": "why"}  preprocess raises kingpost.InputError("why")       -> 400
    {"raise": "text"}   predict raises RuntimeError("text")                -> 500
    {"numpy": n}        numpy output: an (n, 2) float32 array and two numpy scalars
    anything else       {"echo": <input>, "pid": <the serving process id>}
"""

import os

import numpy as np

import kingpost


class Model:
    def preprocess(self, model_input):
        if isinstance(model_input, dict) and "invalid" in model_input:
            raise kingpost.InputError(model_input["invalid"])
        return model_input

    def predict(self, model_input):
        if isinstance(model_input, dict):
            if "raise" in model_input:
                raise RuntimeError(model_input["raise"])
            if "numpy" in model_input:
                n = model_input["numpy"]
                return {"array": np.arange(2 * n, dtype=np.float32).reshape(n, 2),
                        "count": np.int64(n), "half": np.float32(0.5)}
        return {"echo": model_input, "pid": os.getpid()}
