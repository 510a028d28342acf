"""Every HTTP endpoint of ``kingpost serve``: status, headers and body, over a real socket.

One server (tests/bundles/server_echo, ``runtime.max_request_bytes: 2048``) answers the tests
that leave it as they found it; a test that needs other flags or config starts its own.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving import Server

pytestmark = pytest.mark.timeout(60)

PREDICT = "/v1/models/model:predict"
READY = "/v1/models/model"


def assert_error(response: httpx.Response, status: int) -> str:
    """The body is exactly ``{"error": "<one sentence>"}``; return the sentence."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"], body
    sentence: str = body["error"]
    assert sentence and sentence.endswith("."), sentence
    assert "\n" not in sentence and "Traceback" not in sentence
    return sentence


def still_serving(client: httpx.Client) -> None:
    response = client.post(PREDICT, json={"after": "an error"})
    assert response.status_code == 200
    assert response.json()["echo"] == {"after": "an error"}


# -- health ---------------------------------------------------------------------------------------


def test_liveness(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("name", ["model", "server-echo", "anything"])
def test_readiness_when_loaded_for_any_model_name(client: httpx.Client, name: str) -> None:
    response = client.get(f"/v1/models/{name}")
    assert response.status_code == 200
    assert response.json()["ready"] is True


# -- predict ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [PREDICT, "/v1/models/model:predict_binary", "/v1/models/other-name:predict"])
def test_predict_json_in_json_out(client: httpx.Client, echo: Server, path: str) -> None:
    payload = {"inputs": [[1, 2.5], [3, None]], "name": "héllo"}
    response = client.post(path, json=payload)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"echo": payload, "pid": echo.pid}


def test_predict_accepts_any_json_value(client: httpx.Client) -> None:
    for value in ([1, 2, 3], "text", 7, None):
        response = client.post(PREDICT, content=json.dumps(value), headers={"content-type": "application/json"})
        assert response.status_code == 200
        assert response.json()["echo"] == value


def test_numpy_outputs_become_json_lists_and_numbers(client: httpx.Client) -> None:
    response = client.post(PREDICT, json={"numpy": 3})
    assert response.status_code == 200
    assert response.json() == {"array": [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], "count": 3, "half": 0.5}


@pytest.mark.parametrize("body", [b'{"inputs": [1, 2', b"\xff\xfe not json", b""], ids=["truncated", "bytes", "empty"])
def test_undecodable_json_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post(PREDICT, content=body, headers={"content-type": "application/json"})
    sentence = assert_error(response, 400)
    assert "JSON" in sentence
    still_serving(client)


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/msgpack"])
def test_undecodable_msgpack_is_400(client: httpx.Client, content_type: str) -> None:
    response = client.post(PREDICT, content=b"\xc1\xc1\xc1", headers={"content-type": content_type})
    sentence = assert_error(response, 400)
    assert "msgpack" in sentence
    still_serving(client)


def test_input_error_from_preprocess_is_400_with_its_sentence(client: httpx.Client) -> None:
    response = client.post(PREDICT, json={"invalid": "age must be a number, found 'ten'."})
    assert assert_error(response, 400) == "age must be a number, found 'ten'."
    still_serving(client)


def test_predict_raising_is_500_naming_the_stage_not_the_text(client: httpx.Client, echo: Server) -> None:
    response = client.post(PREDICT, json={"raise": "secret-db-password-42"})
    sentence = assert_error(response, 500)
    assert "predict" in sentence
    assert "secret-db-password-42" not in response.text
    assert "RuntimeError" not in response.text
    # The operator still finds the exception, with its traceback, in the server's log.
    echo.wait_for_stderr("secret-db-password-42")
    assert "Traceback" in echo.stderr()
    still_serving(client)


def test_a_500_names_the_request_so_the_log_line_can_be_found(client: httpx.Client, echo: Server) -> None:
    response = client.post(PREDICT, json={"raise": "disk full"}, headers={"x-request-id": "req-7f3a"})
    assert "(request req-7f3a)" in assert_error(response, 500)
    echo.wait_for_stderr(r"request req-7f3a: .*disk full")

    response = client.post(PREDICT, json={"raise": "disk full again"})  # no id sent: the server makes one
    found = re.search(r"\(request (\S+)\)\.$", assert_error(response, 500))
    assert found
    echo.wait_for_stderr(rf"request {re.escape(found[1])}: .*disk full again")


# -- request size -----------------------------------------------------------------------------------


def test_body_under_the_limit_is_served(client: httpx.Client) -> None:
    text = "x" * 1500
    response = client.post(PREDICT, json=text)
    assert response.status_code == 200
    assert response.json()["echo"] == text


def test_body_over_the_limit_by_content_length_is_413(client: httpx.Client) -> None:
    body = json.dumps("x" * 3000).encode()
    response = client.post(PREDICT, content=body, headers={"content-type": "application/json"})
    sentence = assert_error(response, 413)
    assert str(len(body)) in sentence and "runtime.max_request_bytes" in sentence and "2048" in sentence
    still_serving(client)


def test_body_over_the_limit_chunked_is_413(echo: Server) -> None:
    # No Content-Length: the server must count the bytes as they arrive. A raw socket sends the
    # whole chunked body before reading, so the answer cannot race the upload.
    chunks = [b'"' + b"x" * 1000, b"x" * 1000, b"x" * 1000 + b'"']
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = (f"POST {PREDICT} HTTP/1.1\r\nHost: {echo.host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    status, _headers, payload = raw_request(echo, head + body)
    assert status == 413
    sentence = json.loads(payload)["error"]
    assert "runtime.max_request_bytes" in sentence and "2048" in sentence


def test_small_chunked_upload_is_served(client: httpx.Client) -> None:
    response = client.post(PREDICT, content=iter([b'{"chunked"', b": true}"]),
                           headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["echo"] == {"chunked": True}


# -- other routes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("POST", "/v3/models/model/infer"),
                                              ("GET", "/v1/models/model:explain")])
def test_unknown_path_is_404(client: httpx.Client, method: str, path: str) -> None:
    assert_error(client.request(method, path), 404)


def test_get_on_predict_is_405(client: httpx.Client) -> None:
    assert_error(client.get(PREDICT), 405)


def test_openapi_describes_the_predict_path(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    predict = spec["paths"]["/v1/models/{model_name}:predict"]["post"]
    assert {"200", "400", "413", "500", "503", "504"} <= set(predict["responses"])
    assert "/v1/models/{model_name}" in spec["paths"]


def test_docs_is_html(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text and "openapi.json" in response.text  # relative: works under a root path


# -- metrics ----------------------------------------------------------------------------------------


def sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of one Prometheus sample, or None when the text has no such sample."""
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found[1]) if found else None


def metric(text: str, name: str, labels: str = "") -> float:
    value = sample(text, name, labels)
    assert value is not None, f"no sample {name}{{{labels}}} in:\n{text}"
    return value


def test_metrics_count_requests_by_status_and_time_each_stage(client: httpx.Client) -> None:
    before = client.get("/metrics").text
    for _ in range(3):
        assert client.post(PREDICT, json={"ok": 1}).status_code == 200
    assert client.post(PREDICT, json={"invalid": "no."}).status_code == 400
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def delta(name: str, labels: str = "") -> float:
        return metric(after, name, labels) - (sample(before, name, labels) or 0)

    assert delta("kingpost_requests_total", 'route="predict",status="200"') == 3
    assert delta("kingpost_requests_total", 'route="predict",status="400"') == 1
    # The 400 came from preprocess: it ran 4 times, predict 3 times.
    assert delta("kingpost_stage_duration_seconds_count", 'stage="preprocess"') == 4
    assert delta("kingpost_stage_duration_seconds_count", 'stage="predict"') == 3
    assert delta("kingpost_stage_duration_seconds_bucket", 'stage="predict",le="+Inf"') == 3
    assert delta("kingpost_request_duration_seconds_count") == 4
    assert metric(after, "kingpost_in_flight") == 0
    assert metric(after, "kingpost_queue_depth") == 0
    for name in ("kingpost_in_flight", "kingpost_queue_depth"):
        assert f"# TYPE {name} gauge" in after
    assert "# TYPE kingpost_stage_duration_seconds histogram" in after


# -- servers of their own ------------------------------------------------------------------------------


def test_debug_puts_the_exception_text_in_the_500(serve: Callable[..., Server]) -> None:
    server = serve("server_echo", "--debug")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(PREDICT, json={"raise": "the GPU caught fire"})
        sentence = assert_error(response, 500)
        assert "predict" in sentence and "RuntimeError" in sentence and "the GPU caught fire" in sentence
        still_serving(client)


def test_request_timeout_is_504_and_the_server_keeps_serving(serve: Callable[..., Server],
                                                             copy_bundle: Callable[..., Path],
                                                             tmp_path: Path) -> None:
    bundle = copy_bundle("server_gate", runtime={"request_timeout_s": 0.3})
    server = serve(bundle)
    gate, log = tmp_path / "gate", tmp_path / "log"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(PREDICT, json={"tag": "slow", "gate": str(gate), "log": str(log)})
        sentence = assert_error(response, 504)
        assert "runtime.request_timeout_s" in sentence or "timed out" in sentence
        gate.touch()
        response = client.post(PREDICT, json={"tag": "next"})
        assert response.status_code == 200
        assert response.json() == {"tag": "next", "pid": server.pid}
        assert metric(client.get("/metrics").text, "kingpost_timeouts_total") == 1


# -- helpers ------------------------------------------------------------------------------------------


def raw_request(server: Server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes on a fresh connection (``Connection: close``) and parse the whole answer."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, Any] = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body
