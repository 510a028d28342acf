"""The server's route table: literal and patterned paths, 405 with Allow, websockets apart."""

from __future__ import annotations

import httpx

from kingpost.server.routes import Route, Router


async def _noop(scope, receive, send, params) -> None:  # pragma: no cover - never called
    return None


ROUTER = Router([
    Route("/metrics", _noop, ("GET",), "metrics"),
    Route("/v1/models/{model}", _noop, ("GET",), "readiness"),
    Route("/v1/models/{model}:predict", _noop, ("POST",), "predict"),
    Route("/files/{rest:path}", _noop, ("GET",), "files"),
    Route("/v1/websocket", _noop, name="ws", websocket=True),
])


def test_literal_and_patterned_paths_match_with_their_parameters() -> None:
    assert ROUTER.match("/metrics", "GET").route.name == "metrics"
    found = ROUTER.match("/v1/models/model:predict", "POST")
    assert found.route.name == "predict" and found.params == {"model": "model"}
    assert ROUTER.match("/v1/models/abc", "GET").params == {"model": "abc"}
    assert ROUTER.match("/files/a/b/c.txt", "GET").params == {"rest": "a/b/c.txt"}


def test_a_parameter_never_spans_a_slash_or_a_colon() -> None:
    assert ROUTER.match("/v1/models/a/b", "GET").route is None
    assert ROUTER.match("/v1/models/a:b:predict", "POST").route is None


def test_wrong_method_lists_what_is_allowed_and_head_comes_with_get() -> None:
    assert ROUTER.match("/metrics", "HEAD").route is not None
    wrong = ROUTER.match("/metrics", "DELETE")
    assert wrong.route is None and wrong.allowed == ("GET", "HEAD")
    assert ROUTER.match("/v1/models/m:predict", "GET").allowed == ("POST",)
    assert ROUTER.match("/nowhere", "GET").allowed == ()


def test_websocket_routes_are_apart_from_http_routes() -> None:
    assert ROUTER.match("/v1/websocket", "GET").route is None
    assert ROUTER.match("/v1/websocket", "", websocket=True).route.name == "ws"


def test_the_server_answers_405_with_allow_and_json(client: httpx.Client) -> None:
    response = client.put("/metrics")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert "use GET, HEAD" in response.json()["error"]
    assert client.get("/v1/models/model:predict").status_code == 405
    assert client.delete("/").headers["allow"] == "GET, HEAD"
