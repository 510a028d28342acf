"""predict takes only the request: Truss does not parse the body (it need not be JSON)."""
from starlette.requests import Request


class Model:
    async def predict(self, request: Request):
        body = await request.body()
        return {"method": request.method, "body": body.decode(), "type": request.headers.get("content-type")}
