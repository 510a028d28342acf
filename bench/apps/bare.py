"""Bare ASGI apps on uvicorn (uvloop + httptools): the ceiling for kingpost's server stack.

`python bare.py --case echo --host H --port P`. No framework: read the body, parse it with orjson,
do the case's work, dump the result with orjson.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import orjson
import uvicorn

READY_PATH = "/v1/models/model"
JSON_HEADERS = [(b"content-type", b"application/json")]


async def _read_body(receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _send(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


def make_app(handle):
    """An ASGI app: POST anything -> handle(parsed JSON) -> JSON; GET READY_PATH -> {}."""

    async def app(scope, receive, send):
        if scope["type"] != "http":  # lifespan: accept and ignore
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["method"] == "GET":
            await _send(send, 200, b"{}")
            return
        data = orjson.loads(await _read_body(receive))
        await _send(send, 200, orjson.dumps(await handle(data)))

    return app


async def echo(data):
    return data


class Pipeline:
    """Preprocess (20 ms) on a thread pool; predict (5 ms) on one dedicated thread fed by a queue.

    The hand-written ceiling for the pipeline case: predict is handed over once per request.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="pre")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._predict_loop, name="predict", daemon=True).start()

    def _predict_loop(self) -> None:
        while True:
            data, future = self._queue.get()
            time.sleep(0.005)
            future.set_result(data)

    def _preprocess(self, data):
        time.sleep(0.02)
        return data

    async def __call__(self, data):
        data = await asyncio.get_running_loop().run_in_executor(self._pool, self._preprocess, data)
        future: Future = Future()
        self._queue.put((data, future))
        return await asyncio.wrap_future(future)


def stream_app():
    """The stream cases' ceiling: the handler itself loops over the chunks and sends each one as it is
    made (no thread, no queue), as SSE frames when the client accepts text/event-stream."""

    async def app(scope, receive, send):
        if scope["type"] != "http" or scope["method"] == "GET":
            await make_app(echo)(scope, receive, send)
            return
        n = orjson.loads(await _read_body(receive))["n"]
        sse = any(k == b"accept" and b"text/event-stream" in v for k, v in scope["headers"])
        ctype = b"text/event-stream" if sse else b"application/octet-stream"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype), (b"cache-control", b"no-cache")]})
        for i in range(n):
            text = f"tok{i:05d} "
            body = f"data: {text}\n\n".encode() if sse else text.encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


HANDLERS = {"echo": lambda: echo, "pipeline": Pipeline, "stream": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", required=True, choices=sorted(HANDLERS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        stream_app() if args.case == "stream" else make_app(HANDLERS[args.case]()),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
