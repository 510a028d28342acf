"""kingpost.create with ONNX: a ModelProto or a .onnx path, run by onnxruntime with named inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import kingpost
from creating import (
    Cases,
    assert_fresh_matches,
    assert_http_matches,
    started_server,
)
from serving import Server

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'kingpost[onnx]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'kingpost[onnx]')")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

W = np.random.default_rng(4).normal(size=(3, 2)).astype(np.float32)
B = np.array([0.5, -1.0], dtype=np.float32)
ROWS = np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32)


def linear() -> Any:
    """Y = X @ W + B, and Z = Y + offset (a second, named input)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"]),
         helper.make_node("Add", ["Y", "offset"], ["Z"])],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def single() -> Any:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"])], "single",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    root = tmp_path_factory.mktemp("onnx")
    kingpost.create(linear(), root / "proto")
    onnx.save(single(), str(root / "single.onnx"))
    kingpost.create(root / "single.onnx", root / "from_path", example_input=ROWS[:1])
    y = ROWS @ W + B
    return {
        "proto": (root / "proto", {"inputs": {"X": ROWS.tolist(), "offset": [1.0]}}, {"Y": y, "Z": y + 1}),
        "from_path": (root / "from_path", ROWS.tolist(), {"Y": y}),
        "from_path_named": (root / "from_path", {"X": ROWS.tolist()}, {"Y": y}),
    }


@pytest.fixture(scope="module")
def server(cases: Cases) -> Iterator[Server]:
    with started_server(cases["proto"][0]) as server:
        yield server


def test_fresh_interpreter_answers_as_in_memory(cases: Cases, server: Server, tmp_path: Path) -> None:
    assert_fresh_matches(cases, tmp_path)


def test_http_answers_as_in_memory(cases: Cases, server: Server) -> None:
    assert_http_matches(server, cases["proto"])


def test_a_request_missing_an_input_is_a_400(cases: Cases, server: Server) -> None:
    response = httpx.post(server.url + "/v1/models/model:predict", json={"inputs": [[1.0, 2.0]]}, timeout=60)
    assert response.status_code == 400
    assert response.json() == {"error": "expected a mapping of the inputs X, offset to values"}


def test_serving_needs_onnxruntime_not_onnx(cases: Cases) -> None:
    config = yaml.safe_load((cases["proto"][0] / "config.yaml").read_text())
    assert {r.split("==")[0] for r in config["requirements"]} == {"numpy", "onnxruntime"}
    assert "INPUTS = {'X': 'float32', 'offset': 'float32'}" in (cases["proto"][0] / "model" / "model.py").read_text()


def test_a_path_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    with pytest.raises(kingpost.BundleError, match=r"model: expected a model object or a path to a \.onnx file"):
        kingpost.create(tmp_path / "weights.bin", tmp_path / "out")
