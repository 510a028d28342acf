"""OpenAI-compatible methods at Truss's paths (Truss's test_custom_openai_endpoints,
test_openai_client_streaming), driven by the official ``openai`` client where it applies."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest
from compat_suite import kingpost_only, served  # noqa: F401 - fixtures are found by name

MESSAGES = [{"role": "user", "content": "hello there"}]


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_chat_completion(served):
    reply = client(served("openai_chat")).chat.completions.create(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.choices[0].finish_reason == "stop"


def test_chat_completion_streams(served):
    stream = client(served("openai_chat")).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    words = [chunk.choices[0].delta.content for chunk in stream]
    assert words == ["echo: ", "hello ", "there "]


def test_completion(served):
    reply = client(served("openai_chat")).completions.create(model="m", prompt="abc")
    assert reply.choices[0].text == "cba"


def test_missing_method_is_a_clear_404(served):
    with pytest.raises(openai.NotFoundError) as info:
        client(served("openai_counts")).chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.status_code == 404


@kingpost_only
def test_missing_method_names_it(served):
    r = httpx.post(served("openai_counts").url + "/v1/chat/completions", json={"increment": 6})
    assert r.status_code == 404
    assert r.json() == {"error": "the model defines no chat_completions method."}
    assert r.headers["x-baseten-error-code"] == "700"


def test_each_method_at_its_path(served):
    url = served("openai_counts").url
    for step, path in enumerate(["/v1/models/model:predict", "/v1/completions", "/v1/embeddings",
                                 "/v1/messages", "/v1/responses"], start=1):
        r = httpx.post(url + path, json={"increment": step})
        assert (r.status_code, r.json()) == (200, step), path
    assert httpx.post(url + "/v1/chat/completions", json={"increment": 6}).status_code == 404


def test_streaming_method_streams_for_the_openai_sdk_even_when_it_asks_for_json(served):
    url = served("openai_chat").url
    headers = {"accept": "application/json", "user-agent": "OpenAI/Python 1.61.0"}
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.headers.get("transfer-encoding") == "chunked"
        text = r.read().decode()
    assert text.count("data: ") == 4 and text.endswith("data: [DONE]\n\n")


@kingpost_only
def test_methods_share_the_predict_lock(served):
    """A chat completion holding the (single) predict slot makes a predict wait for it."""
    url = served("openai_chat").url
    slow = threading.Thread(target=lambda: client_call(url, 0.6))
    slow.start()
    time.sleep(0.2)
    start = time.monotonic()
    r = httpx.post(url + "/v1/models/model:predict", json=[1], timeout=10)
    waited = time.monotonic() - start
    slow.join(10)
    assert r.json() == {"predicted": [1]}
    assert waited > 0.25, f"predict did not wait for the chat completion ({waited:.3f} s)"


def client_call(url: str, sleep: float) -> None:
    httpx.post(url + "/v1/chat/completions", timeout=10,
               json={"model": "m", "messages": MESSAGES, "metadata": {"sleep": str(sleep)}})


@kingpost_only
def test_openai_routes_in_openapi(served):
    paths = httpx.get(served("openai_chat").url + "/openapi.json").json()["paths"]
    assert "/v1/chat/completions" in paths and "/v1/completions" in paths and "/v1/embeddings" not in paths
