"""Raises in the stage the input names: {"raise": "preprocess" | "predict" | "postprocess" | "input" | "http"}.

"input" raises kingpost's InputError; "http" raises an exception with status_code 400, the way a Truss
model raises fastapi.HTTPException. Anything else passes through.
"""

from kingpost import InputError


class BadRequest(Exception):
    status_code = 400
    detail = "field 'x' must be a number"


class Model:
    def preprocess(self, model_input):
        if model_input.get("raise") == "preprocess":
            raise ValueError("cannot parse the input")
        if model_input.get("raise") == "input":
            raise InputError("expected a field 'x'.")
        if model_input.get("raise") == "http":
            raise BadRequest("bad request")
        return model_input

    def predict(self, model_input):
        if model_input.get("raise") == "predict":
            raise RuntimeError("CUDA out of memory")
        return model_input

    def postprocess(self, model_output):
        if model_output.get("raise") == "postprocess":
            raise ZeroDivisionError("division by zero")
        return model_output
