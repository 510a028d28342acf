"""The Open Inference Protocol on a real server: tritonclient (JSON and binary), the spec's examples, V1 == V2."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from conftest import bundle_path
from serving import Server, serving

# The specification's inference request example (kserve predict-api/v2, "Inference Request Examples"),
# with input1's data holding the three elements its shape [3] asks for (the spec's text shows one).
SPEC_REQUEST = {
    "id": "42",
    "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
    ],
    "outputs": [{"name": "output0"}],
}
SPEC_RESPONSE_OUTPUT0 = {"name": "output0", "shape": [3, 2], "datatype": "FP32",
                         "data": [1.0, 1.1, 2.0, 2.1, 3.0, 3.1]}


@pytest.fixture(scope="module")
def spec_server() -> Iterator[Server]:
    with serving(bundle_path("v2_spec")) as server:
        yield server


@pytest.fixture(scope="module")
def echo_server() -> Iterator[Server]:
    with serving(bundle_path("echo")) as server:
        yield server


def client_for(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"{server.host}:{server.port}", connection_timeout=10, network_timeout=30)


def test_the_spec_json_example_gets_the_spec_answer(spec_server: Server) -> None:
    answer = httpx.post(spec_server.url + "/v2/models/mymodel/infer", json=SPEC_REQUEST, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["id"] == "42" and body["model_name"] == "mymodel"
    assert body["outputs"] == [SPEC_RESPONSE_OUTPUT0]  # only the requested output

    nested = {**SPEC_REQUEST, "inputs": [{**SPEC_REQUEST["inputs"][0], "data": [[1, 2], [3, 4]]},
                                         SPEC_REQUEST["inputs"][1]], "outputs": None}
    nested.pop("outputs")
    every = httpx.post(spec_server.url + "/v2/models/mymodel/versions/1/infer", json=nested, timeout=30).json()
    assert every["model_version"] == "1"
    assert every["outputs"] == [SPEC_RESPONSE_OUTPUT0, {"name": "output1", "datatype": "BOOL", "shape": [3],
                                                        "data": [False, True, False]}]


def test_the_spec_binary_example_with_a_binary_and_a_json_output(spec_server: Server) -> None:
    head = orjson.dumps({
        "model_name": "mymodel",
        "inputs": [{"name": "input0", "shape": [2, 2], "datatype": "UINT32", "parameters": {"binary_data_size": 16}},
                   {"name": "input1", "shape": [3], "datatype": "BOOL", "parameters": {"binary_data_size": 3}}],
        "outputs": [{"name": "output0", "parameters": {"binary_data": True}}, {"name": "output1"}],
    })
    body = head + np.array([1, 2, 3, 4], dtype="<u4").tobytes() + b"\x01\x00\x01"
    answer = httpx.post(spec_server.url + "/v2/models/mymodel/infer", content=body, timeout=30, headers={
        "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})
    assert answer.status_code == 200, answer.text
    length = int(answer.headers["inference-header-content-length"])
    meta = orjson.loads(answer.content[:length])
    assert meta["outputs"][0] == {"name": "output0", "datatype": "FP32", "shape": [3, 2],
                                  "parameters": {"binary_data_size": 24}}
    assert meta["outputs"][1]["data"] == [False, True, False]
    output0 = np.frombuffer(answer.content[length:], dtype="<f4")
    assert np.allclose(output0, SPEC_RESPONSE_OUTPUT0["data"])


def test_health_metadata_and_readiness_over_the_protocol(spec_server: Server) -> None:
    url = spec_server.url
    assert httpx.get(url + "/v2/health/live").status_code == 200
    assert httpx.get(url + "/v2/health/ready").status_code == 200
    server = httpx.get(url + "/v2").json()
    assert server["name"] == "kingpost" and "binary_tensor_data" in server["extensions"]
    meta = httpx.get(url + "/v2/models/mymodel").json()
    assert meta["name"] == "mymodel" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input0", "datatype": "UINT32", "shape": [2, 2]},
                              {"name": "input1", "datatype": "BOOL", "shape": [3]}]
    assert [o["name"] for o in meta["outputs"]] == ["output0", "output1"]
    assert httpx.get(url + "/v2/models/mymodel/versions/1").json() == meta
    assert httpx.get(url + "/v2/models/mymodel/ready").status_code == 200
    assert "/v2/models/{model_name}/infer" in httpx.get(url + "/openapi.json").json()["paths"]
    missing = httpx.get(url + "/v2/models/mymodel/versions/7")
    assert missing.status_code == 404 and "one version" in missing.json()["error"]


def test_errors_are_protocol_bodies_with_their_statuses(spec_server: Server) -> None:
    url = spec_server.url + "/v2/models/mymodel/infer"
    as_in_spec = {**SPEC_REQUEST, "inputs": [SPEC_REQUEST["inputs"][0], {**SPEC_REQUEST["inputs"][1], "data": [True]}]}
    for body, status, message in (
        (as_in_spec, 400, r"input 'input1': shape \[3\] needs 3 elements, found 1"),
        ({"inputs": [{"name": "input0", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, 400,
         "must be UINT32"),
        ({**SPEC_REQUEST, "outputs": [{"name": "nope"}]}, 400, "no output 'nope'"),
        ({"inputs": "x"}, 400, "non-empty 'inputs' list"),
    ):
        answer = httpx.post(url, json=body, timeout=30)
        assert answer.status_code == status and answer.json().keys() == {"error"}, answer.text
        assert re.search(message, answer.json()["error"]), answer.text
    assert httpx.post(url, content=b"{", timeout=30).status_code == 400


def test_tritonclient_binary_and_json_with_several_datatypes(echo_server: Server) -> None:
    client = client_for(echo_server)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("echo")
        tensors = {
            "fp16": np.arange(6, dtype=np.float16).reshape(2, 3) / 4,
            "fp32": np.linspace(-1, 1, 4, dtype=np.float32),
            "int64": np.array([[-(2**40)], [7]], dtype=np.int64),
            "uint8": np.array([0, 255], dtype=np.uint8),
            "bool": np.array([True, False]),
            "bytes": np.array([b"caf\xc3\xa9", b"", b"ok"], dtype=object),
        }
        for binary in (True, False):
            inputs = []
            for name, array in tensors.items():
                datatype = {"fp16": "FP16", "fp32": "FP32", "int64": "INT64", "uint8": "UINT8", "bool": "BOOL",
                            "bytes": "BYTES"}[name]
                tensor = triton.InferInput(name, list(array.shape), datatype)
                tensor.set_data_from_numpy(array, binary_data=binary)
                inputs.append(tensor)
            outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in tensors]
            result = client.infer("echo", inputs, outputs=outputs, request_id=f"req-{binary}")
            assert result.get_response()["id"] == f"req-{binary}"
            for name, array in tensors.items():
                got = result.as_numpy(name)
                if name == "bytes" and not binary:  # tritonclient reads JSON BYTES as str
                    got = np.array([x.encode() for x in got], dtype=object)
                assert got.shape == array.shape and got.tolist() == array.tolist(), (binary, name, got)
                if name != "bytes":
                    assert got.dtype == array.dtype, (binary, name)
        # No requested outputs: tritonclient asks for every output in binary.
        tensor = triton.InferInput("only", [2], "FP32")
        tensor.set_data_from_numpy(np.array([1.5, 2.5], dtype=np.float32))
        result = client.infer("echo", [tensor])
        assert result.as_numpy("output-0").tolist() == [1.5, 2.5]
        assert client.get_model_repository_index() == [{"name": "echo", "version": "1", "state": "READY",
                                                        "reason": ""}]
        with pytest.raises(InferenceServerException, match="one bundle"):
            client.unload_model("echo")
    finally:
        client.close()


def test_the_model_without_a_signature_says_so_and_still_infers(echo_server: Server) -> None:
    meta = httpx.get(echo_server.url + "/v2/models/echo").json()
    assert meta["inputs"] == [] and "not declared" in meta["parameters"]["signature"]
    answer = httpx.post(echo_server.url + "/v2/models/echo/infer", timeout=30, json={
        "inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [5]}]})
    assert answer.json()["outputs"] == [{"name": "output-0", "datatype": "INT32", "shape": [1], "data": [5]}]


@pytest.fixture
def trained_linear(copy_bundle: Callable[..., Path]) -> tuple[Path, np.ndarray]:
    """Fit y = X w + b by least squares on tiny data and write the weights into the bundle's data/."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 3))
    target = features @ np.array([2.0, -1.0, 0.5]) + 0.25 + rng.normal(scale=0.01, size=40)
    design = np.hstack([features, np.ones((40, 1))])
    weights, *_ = np.linalg.lstsq(design, target, rcond=None)
    bundle = copy_bundle("v2_linear")
    (bundle / "data").mkdir()
    np.save(bundle / "data" / "weights.npy", weights)
    return bundle, weights


def test_the_same_payload_over_v1_and_v2_gives_the_same_answer(serve: Callable[..., Server],
                                                                trained_linear: tuple[Path, np.ndarray]) -> None:
    bundle, weights = trained_linear
    server = serve(bundle)
    rows = [[0.5, -1.0, 2.0], [-2.0, 0.1, 0.0], [0.0, 0.0, 0.0]]
    expected = np.asarray(rows) @ weights[:-1] + weights[-1]

    v1 = httpx.post(server.url + "/v1/models/model:predict", json={"features": rows}, timeout=30).json()
    v2 = httpx.post(server.url + "/v2/models/linear/infer", timeout=30, json={
        "inputs": [{"name": "features", "shape": [3, 3], "datatype": "FP32", "data": rows}]}).json()
    by_name = {o["name"]: o for o in v2["outputs"]}
    assert by_name["prediction"]["datatype"] == "FP64" and by_name["label"]["datatype"] == "BYTES"
    assert np.allclose(v1["prediction"], expected)
    assert np.allclose(by_name["prediction"]["data"], v1["prediction"], atol=1e-5)  # FP32 in, FP64 out
    assert by_name["label"]["data"] == v1["label"] == ["high" if p > 0 else "low" for p in expected]

    client = client_for(server)
    try:
        tensor = triton.InferInput("features", [3, 3], "FP32")
        tensor.set_data_from_numpy(np.asarray(rows, dtype=np.float32))
        result = client.infer("linear", [tensor])
        assert np.allclose(result.as_numpy("prediction"), v1["prediction"], atol=1e-5)
        assert [x.decode() for x in result.as_numpy("label")] == v1["label"]
        wrong = triton.InferInput("features", [3, 2], "FP32")
        wrong.set_data_from_numpy(np.zeros((3, 2), dtype=np.float32))
        with pytest.raises(InferenceServerException, match=r"shape \[-1, 3\]"):
            client.infer("linear", [wrong])
    finally:
        client.close()


def test_v2_infers_share_the_runtimes_batching_and_limits(serve: Callable[..., Server],
                                                         copy_bundle: Callable[..., Path]) -> None:
    bundle = copy_bundle("echo", runtime={"batching": {"max_batch_size": 8, "max_wait_ms": 50},
                                          "max_request_bytes": 4096})
    server = serve(bundle)
    count = 16
    answers: dict[int, list[float]] = {}

    def infer(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body = {"id": str(i), "inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [i, -i]}]}
            answer = client.post("/v2/models/echo/infer", json=body).json()
            assert answer["id"] == str(i)
            answers[i] = answer["outputs"][0]["data"]

    threads = [threading.Thread(target=infer, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == {i: [float(i), float(-i)] for i in range(count)}  # each its own item of a batch
    metrics = httpx.get(server.url + "/metrics").text
    batches = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
               if line.startswith("kingpost_batch_size_")}
    assert batches["kingpost_batch_size_sum"] == count and batches["kingpost_batch_size_count"] < count

    big = {"inputs": [{"name": "x", "shape": [2000], "datatype": "FP64", "data": [0.5] * 2000}]}
    answer = httpx.post(server.url + "/v2/models/echo/infer", json=big, timeout=30)
    assert answer.status_code == 413 and "max_request_bytes" in answer.json()["error"]
