"""Per-request CPU of kingpost's HTTP protocol + app on an in-memory transport: no sockets, no wrk.

    PYTHONPATH=src python bench/protocol_cpu.py [N]      # 5 rounds of N echo requests (20000)

The echo bundle's request, fed to the protocol object uvicorn would use, answered by the app, on
one keep-alive connection; CPU seconds (process_time) per request. It leaves out the kernel and the
event loop's socket work, so it is the figure that moves when the Python on the hot path changes:
run it with PYTHONPATH at two trees to compare them (a tree without server/guard.py runs uvicorn's
own protocol). Quick enough to repeat; take the lowest round of several runs.
"""
import asyncio
import io
import json
import sys
import time
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from kingpost.config import load_config
from kingpost.runtime import Runtime
from kingpost.server.app import App

BUNDLE = Path(__file__).resolve().parent / "bundles" / "echo"
ROWS = [[0.5, 1.25, -3.0, 4.75, 8.0, 0.0, 1.0, 2.5] for _ in range(4)]
BODY = json.dumps({"inputs": ROWS, "id": "bench-0001"}).encode()  # the echo case's payload
REQ = (b"POST /v1/models/model:predict HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n"
       b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)



class Transport:
    """Enough of an asyncio transport for the protocol; notes when an answer's body was written."""

    def __init__(self) -> None:
        self.done: asyncio.Future[None] | None = None

    def write(self, data: bytes) -> None:
        if data.endswith((b"}", b"]")) and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def main(n: int) -> None:
    loop = asyncio.get_running_loop()
    runtime = Runtime(BUNDLE, load_config(BUNDLE))
    await runtime.start()
    try:
        from kingpost.server.guard import protocol_class
    except ImportError:  # a tree from before the guards: uvicorn's own protocol
        app = App(runtime, access_log=True, on_uvicorn=True)
        cls: type = HttpToolsProtocol
        which = "uvicorn protocol"
    else:
        app = App(runtime, access_log=True, on_uvicorn=True, allowed_hosts=frozenset({b"127.0.0.1:8080"}))
        cls = protocol_class(runtime.config.runtime.limits, runtime.config.runtime.max_request_bytes, app.cancellable)
        which = "guarded protocol"
    assert app.access_log is not None
    app.access_log._stream = io.StringIO()  # formatted and written as in production, then dropped
    config = uvicorn.Config(app, http=cls, lifespan="off", access_log=False, log_config=None)
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = Transport()
    protocol.connection_made(transport)
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            transport.done = loop.create_future()
            protocol.data_received(REQ)
            await transport.done
        print(f"{which}: {(time.process_time() - start) / n * 1e6:.2f} us/request", flush=True)
        app.access_log._stream = io.StringIO()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
