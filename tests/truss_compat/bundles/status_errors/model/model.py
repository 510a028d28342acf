"""Errors with and without an HTTP status (Truss's test_truss_with_errors and _with_user_errors)."""
import fastapi


class Model:
    def predict(self, inputs):
        kind = inputs.get("kind")
        if kind == "http500":
            raise fastapi.HTTPException(status_code=500, detail="My custom message.")
        if kind == "http503":
            raise fastapi.HTTPException(status_code=503, detail="Busy warming the cache.")
        if kind == "http404":
            raise fastapi.HTTPException(status_code=404, detail="No such item.")
        if kind == "value":
            raise ValueError("error")
        return {"ok": True}
