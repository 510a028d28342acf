"""Request objects in, Response objects out (Truss's test_truss_with_request, _with_response,
_with_streaming_response, _forbid_postprocessing_with_response), in process and over HTTP."""

from __future__ import annotations

import sys
import time

import httpx
import pytest
from compat_suite import compat, kingpost_only, load_compat, served  # noqa: F401 - fixtures are found by name

PREDICT = "/v1/models/model:predict"


def test_request_reaches_hooks_over_http(served):
    server = served("request")
    r = httpx.post(server.url + PREDICT + "?q=yes", content=b'{"test": 123}',
                   headers={"x-probe": "p1", "content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json() == {"test": 123, "request_size": 13, "probe": "p1", "q": "yes", "disconnected": False,
                        "postprocess": "was here"}


@kingpost_only
def test_request_reaches_hooks_in_process(load_compat):
    assert load_compat("request").predict({"test": 123}) == {
        "test": 123, "request_size": 12, "probe": None, "q": None, "disconnected": False, "postprocess": "was here"}


def test_request_only_predict_skips_input_parsing(served):
    server = served("request_only")
    r = httpx.post(server.url + PREDICT, content=b"not json at all", headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json() == {"method": "POST", "body": "not json at all", "type": "text/plain"}


@kingpost_only
def test_starlette_is_imported_only_for_bundles_that_ask(tmp_path):
    import subprocess

    code = ("import sys, kingpost; b = kingpost.load(sys.argv[1]); b.predict([1]); "
            "print('starlette' in sys.modules)")
    plain = tmp_path / "plain"
    (plain / "model").mkdir(parents=True)
    (plain / "config.yaml").write_text("model_name: plain\n")
    (plain / "model" / "model.py").write_text("class Model:\n    def predict(self, x):\n        return x\n")
    out = subprocess.run([sys.executable, "-c", code, str(plain)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_response_status_and_error_headers(served):
    server = served("response")
    ok = httpx.post(server.url + PREDICT, json={"code": 204})
    assert ok.status_code == 204
    assert "x-baseten-error-source" not in ok.headers and "x-baseten-error-code" not in ok.headers
    custom = httpx.post(server.url + PREDICT, json={"code": 201})
    assert (custom.status_code, custom.content, custom.headers["x-model"]) == (201, b"custom", "yes")
    failed = httpx.post(server.url + PREDICT, json={"code": 500})
    assert failed.status_code == 500
    assert failed.headers["x-baseten-error-source"] == "04"
    assert failed.headers["x-baseten-error-code"] == "700"


def test_streaming_response_is_sent_as_is(served):
    server = served("streaming_response")
    with httpx.stream("POST", server.url + PREDICT, json={}) as r:
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        text = r.read().decode()
    assert text.strip().split("\n") == ["data: 0", "", "data: 1", "", "data: 2"]


def test_response_next_to_postprocess_is_refused(served):
    server = served("response_postprocess")
    r = httpx.post(server.url + PREDICT, json={})
    assert r.status_code == 500
    assert r.headers["x-baseten-error-source"] == "04"
    assert r.headers["x-baseten-error-code"] == "600"


@kingpost_only
def test_response_next_to_postprocess_names_predict_not_postprocess(served):
    server = served("response_postprocess")
    r = httpx.post(server.url + PREDICT, json={})
    assert "predict" in r.json()["error"] and "postprocess raised" not in r.json()["error"]
    log = server.stderr()
    assert "predict returned a response object, so it cannot have a postprocess" in log


@kingpost_only
def test_response_from_plain_predict_in_process_is_the_object(load_compat):
    from starlette.responses import Response

    out = load_compat("response").predict({"code": 202})
    assert isinstance(out, Response) and out.status_code == 202


@kingpost_only
def test_app_made_after_loading_serves_the_surface():
    """A Ray Serve replica loads the model, then makes the app: the app adopts the surface at once."""
    import asyncio

    from kingpost.config import load_config
    from kingpost.runtime import Runtime
    from kingpost.server.app import App

    async def run() -> httpx.Response:
        runtime = Runtime(compat("request"), load_config(compat("request")))
        await runtime.start()
        try:
            app = App(runtime, access_log=False)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post(PREDICT, content=b'{"test": 1}', headers={"content-type": "application/json"})
        finally:
            await runtime.stop()

    r = asyncio.run(run())
    assert r.status_code == 200, r.text
    assert r.json()["request_size"] == 11 and r.json()["postprocess"] == "was here"


def test_request_sees_the_client_leave(served):
    server = served("request_disconnect")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + PREDICT, json={"tag": "t1"}, timeout=httpx.Timeout(0.5, connect=2))
    deadline = time.monotonic() + 5
    while "Cancelled (before gen) t1." not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Cancelled (before gen) t1." in server.stderr()
    assert httpx.post(server.url + PREDICT, json={"tag": "t2"}, timeout=10).json() == "Done"
