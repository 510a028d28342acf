"""Hooks that take the request (Truss's test_truss_with_request, plus headers, query and disconnect)."""
import fastapi


class Model:
    async def preprocess(self, request: fastapi.Request):
        return await request.json()

    async def predict(self, inputs, request: fastapi.Request):
        inputs["request_size"] = len(await request.body())
        inputs["probe"] = request.headers.get("x-probe")
        inputs["q"] = request.query_params.get("q")
        inputs["disconnected"] = await request.is_disconnected()
        return inputs

    def postprocess(self, inputs):
        return {**inputs, "postprocess": "was here"}
