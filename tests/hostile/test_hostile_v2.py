"""Hostile traffic on the V2 infer route: the same guards as ``:predict``.

Bounds stated here (default limits unless a test says otherwise):
- a 15 MiB V2 JSON body of empty lists is a 413 naming ``max_decode_elements`` before it is decoded
  (peak RSS growth < 100 MiB), and a client predicting meanwhile never waits more than 1.5 s;
- a V2 body nested past ``max_decode_depth`` is a 400 naming it; one level less is decoded;
- an infer whose binary sizes claim more than the body holds is a 400;
- a Content-Type other than JSON, octet-stream or none is a 415, while tritonclient (sync: no
  Content-Type; aio: application/octet-stream), JSON and binary, still infers;
- 50 V2 infers queued behind a held predict slot whose clients reset leave the queue within 2 s
  (499 in the access log) and never reach predict;
- an infer still waiting past ``--grace-period`` gets :predict's 503 JSON sentence (it was a plain 500).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from hostile_http import LatencyProbe, eventually, head, memory_kb, serve_copy

from serving import Server, in_background

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
INFER = "/v2/models/echo/infer"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = serve_copy(tmp_path_factory, "echo", drop=("max_request_bytes",))  # the default limits
    yield started
    started.stop()


def _infer(server: Server, body: bytes, content_type: str | None = "application/json",
           **headers: str) -> httpx.Response:
    sent = dict(headers) | ({"content-type": content_type} if content_type else {})
    return httpx.post(server.url + INFER, content=body, headers=sent, timeout=60)


def _request(data: object, shape: list[int], datatype: str = "FP32") -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}).encode()


def test_a_v2_json_bomb_is_refused_before_decoding_and_others_keep_being_answered(server: Server) -> None:
    count = 15 * MIB // 3
    bomb = b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[' + b"[]," * count + b"[]]}]}"
    before = memory_kb(server.pid, "VmHWM")
    with LatencyProbe(server.host, server.port) as probe:
        time.sleep(0.3)
        response = _infer(server, bomb)
        time.sleep(0.3)
    assert response.status_code == 413, response.text
    assert "max_decode_elements" in response.json()["error"]
    grown_mib = (memory_kb(server.pid, "VmHWM") - before) / 1024
    print(f"V2 JSON bomb: peak RSS +{grown_mib:.0f} MiB, worst other latency {max(probe.latencies):.3f} s")
    assert grown_mib < 100, f"peak RSS grew {grown_mib:.0f} MiB"
    assert not probe.failures and len(probe.latencies) >= 3
    assert max(probe.latencies) < 1.5, f"another client waited {max(probe.latencies):.2f} s"
    assert _infer(server, _request([1.5], [1])).json()["outputs"][0]["data"] == [1.5]  # the server serves on


def test_deep_v2_json_is_a_400_at_the_exact_depth(server: Server) -> None:
    def nested(levels: int) -> bytes:  # the request object and "inputs" take 2 levels, the tensor 1, data 1
        inner = "[" * (levels - 4) + '"a"' + "]" * (levels - 4)
        return ('{"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":[' + inner + "]}]}").encode()

    too_deep = _infer(server, nested(65))
    assert too_deep.status_code == 400, too_deep.text
    assert "max_decode_depth" in too_deep.json()["error"] and too_deep.json()["error"].endswith(".")
    at_limit = _infer(server, nested(64))
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["outputs"][0]["data"] == ["a"]


def test_binary_sizes_past_the_body_are_a_400(server: Server) -> None:
    header = json.dumps({"inputs": [{"name": "x", "shape": [4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 1 << 30}}]}).encode()
    body = header + np.ones(4, np.float32).tobytes()
    answer = _infer(server, body, "application/octet-stream", **{"inference-header-content-length": str(len(header))})
    assert answer.status_code == 400 and "binary_data_size" in answer.json()["error"], answer.text
    claims_more = _infer(server, body, "application/octet-stream",
                         **{"inference-header-content-length": str(len(body) + 1)})
    assert claims_more.status_code == 400 and "Inference-Header-Content-Length" in claims_more.json()["error"]


def test_a_wrong_content_type_is_a_415_and_tritonclient_still_infers(server: Server) -> None:
    body = _request([1.0, 2.0], [2])
    for wrong in ("text/plain", "application/x-www-form-urlencoded", "application/msgpack", "multipart/form-data"):
        answer = _infer(server, body, wrong)
        assert answer.status_code == 415, (wrong, answer.text)
        assert "application/json" in answer.json()["error"]
    for right in ("application/json", "application/json; charset=utf-8", "application/octet-stream", None):
        answer = _infer(server, body, right)
        assert answer.status_code == 200, (right, answer.text)

    array = np.array([0.5, -2.0, 3.25], dtype=np.float32)
    client = triton.InferenceServerClient(f"{server.host}:{server.port}", connection_timeout=10, network_timeout=30)
    try:
        for binary in (False, True):
            tensor = triton.InferInput("x", [3], "FP32")
            tensor.set_data_from_numpy(array, binary_data=binary)
            result = client.infer("echo", [tensor], outputs=[triton.InferRequestedOutput("output-0", binary)])
            assert result.as_numpy("output-0").tolist() == array.tolist()
    finally:
        client.close()

    async def aio() -> list[list[float]]:
        got = []
        async with triton_aio.InferenceServerClient(f"{server.host}:{server.port}") as aclient:
            for binary in (False, True):
                tensor = triton_aio.InferInput("x", [3], "FP32")
                tensor.set_data_from_numpy(array, binary_data=binary)
                result = await aclient.infer("echo", [tensor])
                got.append(result.as_numpy("output-0").tolist())
        return got

    assert asyncio.run(aio()) == [array.tolist(), array.tolist()]


def _depth(server: Server) -> float:
    found = re.search(r"^kingpost_queue_depth (\S+)$", server.get("/metrics").text, re.M)
    assert found
    return float(found[1])


def _gate_request(**fields: str) -> dict[str, object]:
    return {"inputs": [{"name": name, "shape": [1], "datatype": "BYTES", "data": [value]}
                       for name, value in fields.items()]}


LEAVERS = 50


def test_abandoned_v2_infers_leave_the_queue_at_once(serve: Callable[..., Server],
                                                     copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    server = serve(copy_bundle("v2_gate", runtime={"max_queue": LEAVERS}))
    infer = "/v2/models/v2-gate/infer"
    gate, log = tmp_path / "gate", tmp_path / "log"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        holder = in_background(lambda: client.post(infer, json=_gate_request(tag="a", gate=str(gate), log=str(log))))
        server.wait_until(lambda: log.exists() and "start a" in log.read_text(), "predict a to start")

        body = json.dumps(_gate_request(tag="leaver", log=str(log), pad="x" * 50_000)).encode()
        leavers = []
        for _ in range(LEAVERS):
            sock = socket.create_connection((server.host, server.port), timeout=10)
            sock.sendall(head("POST", infer, "localhost", "Content-Type: application/json", body=body))
            leavers.append(sock)
        eventually(lambda: _depth(server) == LEAVERS, 20, f"{LEAVERS} infers to queue")
        assert client.post(infer, json=_gate_request(tag="refused")).status_code == 503  # max_queue is full

        for sock in leavers:  # reset, as a client killed mid-request would
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        left = time.monotonic()
        eventually(lambda: _depth(server) == 0, 2, "the abandoned infers to leave the queue")
        assert time.monotonic() - left < 2
        server.wait_for_stderr(r'"POST /v2/models/v2-gate/infer" 499 ', count=LEAVERS, timeout=5)
        assert "Exception in ASGI application" not in server.stderr()
        assert "end a" not in log.read_text()  # the slot is still held

        live = in_background(lambda: client.post(infer, json=_gate_request(tag="live")))
        eventually(lambda: _depth(server) == 1, 5, "the live infer to queue")
        gate.touch()
        assert holder().json()["outputs"][0]["data"] == ["a"]
        assert live().json()["outputs"][0]["data"] == ["live"]
    assert "leaver" not in log.read_text()  # no abandoned infer ever reached predict


def test_an_infer_stopped_by_the_shutdown_gets_a_503_in_json(serve: Callable[..., Server],
                                                             copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    server = serve(copy_bundle("v2_gate"), "--grace-period", "0.5")
    gate, log = tmp_path / "gate", tmp_path / "log"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        held = in_background(lambda: client.post("/v2/models/v2-gate/infer",
                                                 json=_gate_request(tag="a", gate=str(gate), log=str(log))))
        server.wait_until(lambda: log.exists() and "start a" in log.read_text(), "predict a to start")
        stopped = time.monotonic()
        server.stop()
        answer = held()
    gate.touch()  # lets the model's thread go
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "the server is shutting down and stopped this request; retry."
    assert time.monotonic() - stopped < 10
