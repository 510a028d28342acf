"""Typed (pydantic) input and output, and the websocket route (Truss's test_websocket_endpoint,
_endpoint_error_logs, test_nonexistent_websocket_endpoint)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets
from compat_suite import kingpost_only, load_compat, served  # noqa: F401 - fixtures are found by name

PREDICT = "/v1/models/model:predict"


def test_typed_input_and_output(served):
    r = httpx.post(served("typed").url + PREDICT, json={"text": "hi", "repeat": 2})
    assert (r.status_code, r.json()) == (200, {"text": "hi hi", "length": 5})


def test_bad_typed_input_is_a_400_naming_the_field(served):
    r = httpx.post(served("typed").url + PREDICT, json={"repeat": 9})
    assert r.status_code == 400
    error = r.json()["error"]
    assert "text" in error and "Field required" in error
    assert "repeat" in error and "less than or equal to 5" in error


def test_schema_route(served):
    schema = httpx.get(served("typed").url + "/v1/models/model/schema").json()
    assert schema["input_schema"]["required"] == ["text"]
    assert set(schema["output_schema"]["properties"]) == {"text", "length"}
    assert schema["supports_streaming"] is False


def test_no_schema_is_a_404(served):
    assert httpx.get(served("openai_chat").url + "/v1/models/model/schema").status_code == 404


@kingpost_only
def test_schema_in_openapi(served):
    doc = httpx.get(served("typed").url + "/openapi.json").json()
    assert doc["components"]["schemas"]["Input"]["required"] == ["text"]
    body = doc["paths"]["/v1/models/{model_name}:predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Input"}


@kingpost_only
def test_the_playground_form_gets_the_typed_schema(served):
    """The playground builds its form from the typed input, known once the model has loaded."""
    url = served("typed").url
    httpx.get(url + "/v1/models/model", timeout=10)
    info = httpx.get(url + "/playground/info", timeout=10).json()
    assert info["schema"]["required"] == ["text"]
    assert {"text", "repeat"} <= set(info["schema"]["properties"])


@kingpost_only
def test_typed_in_process(load_compat):
    from kingpost import InputError

    bundle = load_compat("typed")
    assert bundle.predict({"text": "a", "repeat": 3}).model_dump() == {"text": "a a a", "length": 5}
    with pytest.raises(InputError, match="`text`: Field required"):
        bundle.predict({})


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/websocket"


def test_websocket_pong_and_done(served):
    async def talk() -> None:
        async with websockets.connect(ws_url(served("websocket"))) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello pong"
            await ws.send("world")
            assert await ws.recv() == "world pong"
            await ws.send("done")
            with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1000
            assert info.value.rcvd.reason == ""
    asyncio.run(asyncio.wait_for(talk(), 20))


def test_websocket_error_closes_1011(served):
    async def talk() -> None:
        async with websockets.connect(ws_url(served("websocket"))) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello pong"
            await ws.send("raise")
            with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1011
            assert info.value.rcvd.reason == "Internal Server Error (in model/chainlet)."
    asyncio.run(asyncio.wait_for(talk(), 20))


def test_websocket_sessions_run_side_by_side(served):
    """As in Truss, a websocket session does not hold a predict slot: two talk at once."""
    async def talk() -> None:
        url = ws_url(served("websocket"))
        async with websockets.connect(url) as a, websockets.connect(url) as b:
            await a.send("a")
            await b.send("b")
            assert (await b.recv(), await a.recv()) == ("b pong", "a pong")
    asyncio.run(asyncio.wait_for(talk(), 20))


def test_no_websocket_method_closes_1003(served):
    async def talk() -> None:
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
            async with websockets.connect(ws_url(served("openai_counts"))) as ws:
                await ws.recv()
        assert info.value.rcvd.code == 1003
        assert info.value.rcvd.reason == "WebSocket is not implemented on this deployment."
    asyncio.run(asyncio.wait_for(talk(), 20))


@kingpost_only
def test_websocket_model_has_no_predict(served):
    r = httpx.post(served("websocket").url + PREDICT, json={})
    assert r.status_code == 404
