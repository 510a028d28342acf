"""Truss's test_websocket_endpoint and _error_logs: pong each text, "done" ends, "raise" raises."""
import fastapi


class Model:
    async def websocket(self, websocket: fastapi.WebSocket):
        try:
            while True:
                text = await websocket.receive_text()
                if text == "done":
                    return
                if text == "raise":
                    raise ValueError("This is test error.")
                await websocket.send_text(text + " pong")
        except fastapi.WebSocketDisconnect:
            pass
