"""predict returns a Response with the status the caller asks for (Truss's test_truss_with_response)."""
from fastapi.responses import Response


class Model:
    def predict(self, inputs):
        return Response(status_code=inputs["code"], content=b"custom", headers={"x-model": "yes"})
