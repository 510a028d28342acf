"""Truss's websocket route, ``/v1/websocket``: a Starlette ``WebSocket`` handed to ``Model.websocket``.

As in Truss: the connection is accepted, then the model's ``async def websocket(self, websocket)``
runs; when it returns the socket is closed with 1000; an exception closes it with 1011 and
"Internal Server Error (in model/chainlet)."; a model without the method accepts and closes
with 1003 and "WebSocket is not implemented on this deployment.". A session does not take a
predict slot (Truss's server does not hold its predict semaphore for websockets either).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from kingpost.types import Params, Receive, Scope, Send, State

if TYPE_CHECKING:
    from kingpost.server.app import App

logger = logging.getLogger("kingpost.server")

NOT_IMPLEMENTED = "WebSocket is not implemented on this deployment."
MODEL_ERROR = "Internal Server Error (in model/chainlet)."
NOT_READY = 1013  # "try again later"


class WebsocketRoute:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        runtime = self.app.runtime  # the first model, with several (the path names none)
        if runtime.state is not State.READY:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": NOT_READY, "reason": "the model is not ready."})
            return
        hook = runtime.hook("websocket")
        if hook is None:
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1003, "reason": NOT_IMPLEMENTED})
            return
        from starlette.websockets import WebSocket, WebSocketDisconnect

        websocket = WebSocket(scope, receive, send)  # type: ignore[arg-type]  # the same ASGI callables
        await websocket.accept()
        try:
            await hook(websocket)
        except WebSocketDisconnect:
            logger.info("the client closed the websocket")
            return
        except Exception:
            logger.exception(MODEL_ERROR)
            with contextlib.suppress(Exception):
                await websocket.close(code=1011, reason=MODEL_ERROR)
            return
        with contextlib.suppress(Exception):  # the model may have closed it already
            await websocket.close(code=1000)
