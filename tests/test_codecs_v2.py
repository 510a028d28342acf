"""The Open Inference Protocol's tensors: every datatype in JSON and binary, shapes, names, errors."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from kingpost import codecs_v2
from kingpost.config import V2_DATATYPES, Signature, TensorSpec
from kingpost.errors import InputError, ModelError

NUMERIC = {"UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "INT8": np.int8,
           "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
           "FP64": np.float64}


def request(*inputs: dict, **extra: object) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def binary_request(tensors: list[tuple[dict, bytes]], **extra: object) -> tuple[bytes, int]:
    head = orjson.dumps({"inputs": [{**t, "parameters": {"binary_data_size": len(raw)}} for t, raw in tensors],
                         **extra})
    return head + b"".join(raw for _, raw in tensors), len(head)


def test_the_config_and_the_codec_know_the_same_datatypes() -> None:
    assert set(V2_DATATYPES) == set(codecs_v2.DATATYPES)


@pytest.mark.parametrize("datatype", sorted(NUMERIC))
def test_every_numeric_datatype_round_trips_in_json_and_in_binary(datatype: str) -> None:
    dtype = NUMERIC[datatype]
    values = np.array([[0, 1, 2], [3, 4, 5]], dtype=dtype)
    decoded = codecs_v2.decode_request(request({"name": "x", "shape": [2, 3], "datatype": datatype,
                                                "data": values.tolist()}), None)
    array = codecs_v2.model_input(decoded)
    assert array.dtype == dtype and array.shape == (2, 3) and (array == values).all()

    body, head = binary_request([({"name": "x", "shape": [2, 3], "datatype": datatype}, values.tobytes())])
    array = codecs_v2.model_input(codecs_v2.decode_request(body, head))
    assert array.dtype == dtype and (array == values).all()

    for binary in (False, True):
        req = codecs_v2.InferRequest(None, {}, None, binary)
        out, out_head = codecs_v2.encode_response({"y": values}, req, "m", None)
        meta = orjson.loads(out[:out_head] if binary else out)["outputs"][0]
        assert meta["datatype"] == datatype and meta["shape"] == [2, 3]
        if binary:
            assert out_head is not None
            assert np.frombuffer(out[out_head:], dtype=dtype).tolist() == values.ravel().tolist()
        else:
            assert out_head is None and meta["data"] == values.ravel().tolist()


def test_bool_and_bytes_in_json_and_binary() -> None:
    body = request({"name": "b", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
                   {"name": "s", "shape": [2, 1], "datatype": "BYTES", "data": [["héllo"], ["world"]]})
    inputs = codecs_v2.model_input(codecs_v2.decode_request(body, None))
    assert inputs["b"].dtype == np.bool_ and inputs["b"].tolist() == [True, False, True]
    assert inputs["s"].dtype == object and inputs["s"].tolist() == [["héllo".encode()], [b"world"]]

    raw = b"".join(struct.pack("<I", len(x)) + x for x in (b"\xff\x00", b"", b"abc"))
    body, head = binary_request([({"name": "s", "shape": [3], "datatype": "BYTES"}, raw),
                                 ({"name": "b", "shape": [2], "datatype": "BOOL"}, b"\x01\x00")])
    inputs = codecs_v2.model_input(codecs_v2.decode_request(body, head))
    assert inputs["s"].tolist() == [b"\xff\x00", b"", b"abc"] and inputs["b"].tolist() == [True, False]

    req = codecs_v2.InferRequest(None, {}, {"s": True, "t": False}, False)
    out, out_head = codecs_v2.encode_response({"s": [b"\xff", b"ok"], "t": "one string"}, req, "m", None)
    assert out_head is not None
    meta = orjson.loads(out[:out_head])["outputs"]
    assert meta[0] == {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 11}}
    assert out[out_head:] == struct.pack("<I", 1) + b"\xff" + struct.pack("<I", 2) + b"ok"
    assert meta[1] == {"name": "t", "datatype": "BYTES", "shape": [1], "data": ["one string"]}


def test_bytes_become_str_when_the_input_says_content_type_str() -> None:
    body = request({"name": "s", "shape": [1], "datatype": "BYTES", "data": ["text"],
                    "parameters": {"content_type": "str"}})
    assert codecs_v2.model_input(codecs_v2.decode_request(body, None)).tolist() == ["text"]


def test_bf16_binary_arrives_as_float32() -> None:
    values = np.array([1.5, -2.0, 0.25], dtype=np.float32)
    upper = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    body, head = binary_request([({"name": "x", "shape": [3], "datatype": "BF16"}, upper)])
    assert codecs_v2.model_input(codecs_v2.decode_request(body, head)).tolist() == [1.5, -2.0, 0.25]


def test_id_requested_outputs_and_their_binary_choice() -> None:
    body = request({"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}, id="abc",
                   outputs=[{"name": "b", "parameters": {"binary_data": True}}, {"name": "a"}],
                   parameters={"binary_data_output": False})
    req = codecs_v2.decode_request(body, None)
    assert req.id == "abc" and req.requested == {"b": True, "a": False}
    out, head = codecs_v2.encode_response({"a": 1, "b": np.float32(2), "c": 3}, req, "m", None, "1")
    assert head is not None
    answer = orjson.loads(out[:head])
    assert answer["id"] == "abc" and answer["model_version"] == "1"
    assert {o["name"]: o.get("data") for o in answer["outputs"]} == {"a": [1], "b": None}  # b is binary, c unasked
    with pytest.raises(InputError, match="no output 'zz'"):
        codecs_v2.encode_response({"a": 1}, codecs_v2.InferRequest(None, {}, {"zz": False}, False), "m", None)


def test_an_unnamed_output_takes_the_declared_name_else_output_0() -> None:
    req = codecs_v2.InferRequest(None, {}, None, False)
    out, _ = codecs_v2.encode_response([1.5, 2.5], req, "m", None)
    assert orjson.loads(out)["outputs"] == [{"name": "output-0", "datatype": "FP64", "shape": [2], "data": [1.5, 2.5]}]
    signature = Signature(outputs=(TensorSpec("y", "FP32", (-1,)), TensorSpec("z", "INT32", (-1,))))
    out, _ = codecs_v2.encode_response(([1, 2], [3]), req, "m", signature)
    assert orjson.loads(out)["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]},
                                            {"name": "z", "datatype": "INT32", "shape": [1], "data": [3]}]


@pytest.mark.parametrize(("tensor", "message"), [
    ({"name": "x", "shape": [3], "datatype": "BOOL", "data": [True]}, r"shape \[3\] needs 3 elements, found 1"),
    ({"name": "x", "shape": [2], "datatype": "INT32", "data": [1.5, 2]}, "INT32 data must be integers"),
    ({"name": "x", "shape": [1], "datatype": "UINT8", "data": [300]}, "outside the range of UINT8"),
    ({"name": "x", "shape": [1], "datatype": "FP33", "data": [1]}, "datatype must be one of"),
    ({"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}, "non-negative integers"),
    ({"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], [2, 3]]}, "not a rectangular array|needs 2"),
    ({"name": "x", "shape": [1], "datatype": "BYTES", "data": [1]}, "BYTES data must be strings"),
    ({"name": "x", "shape": [1], "datatype": "FP32"}, "neither 'data' nor"),
])
def test_bad_tensors_are_one_sentence_naming_the_input(tensor: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        codecs_v2.decode_request(request(tensor), None)


def test_bad_binary_bodies_are_refused_before_anything_is_allocated() -> None:
    body, head = binary_request([({"name": "x", "shape": [10**12], "datatype": "FP32"}, b"\0" * 8)])
    with pytest.raises(InputError, match="needs 4000000000000 bytes, found 8"):
        codecs_v2.decode_request(body, head)
    body, head = binary_request([({"name": "x", "shape": [2], "datatype": "FP32"}, b"\0" * 8)])
    assert codecs_v2.model_input(codecs_v2.decode_request(body, head)).tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match="binary bytes that no input claims"):
        codecs_v2.decode_request(body + b"extra", head)
    with pytest.raises(InputError, match="does not fit"):
        codecs_v2.decode_request(body[:-1], head)
    with pytest.raises(InputError, match="Inference-Header-Content-Length is 9999"):
        codecs_v2.decode_request(body, 9999)
    for bad, message in ((b"", "empty"), (b"[1]", "JSON object"), (b"{", "not valid JSON"),
                         (b'{"inputs": []}', "non-empty 'inputs'")):
        with pytest.raises(InputError, match=message):
            codecs_v2.decode_request(bad, None)


def test_declared_inputs_are_held_to_their_names_datatypes_and_shapes() -> None:
    signature = Signature(inputs=(TensorSpec("a", "FP32", (-1, 2)),))
    ok = codecs_v2.decode_request(request({"name": "a", "shape": [3, 2], "datatype": "FP32", "data": [0] * 6}), None)
    codecs_v2.check_inputs(ok, signature)
    for tensor, message in (({"name": "a", "shape": [2, 3], "datatype": "FP32", "data": [0] * 6}, r"shape \[-1, 2\]"),
                            ({"name": "a", "shape": [1, 2], "datatype": "FP64", "data": [0, 0]}, "must be FP32"),
                            ({"name": "b", "shape": [1], "datatype": "FP32", "data": [0]}, "not one of")):
        with pytest.raises(InputError, match=message):
            codecs_v2.check_inputs(codecs_v2.decode_request(request(tensor), None), signature)


def test_outputs_that_are_not_tensors_are_a_model_error() -> None:
    req = codecs_v2.InferRequest(None, {}, None, False)
    with pytest.raises(ModelError, match="'out' cannot be sent as a V2 tensor"):
        codecs_v2.encode_response({"out": [{"nested": 1}]}, req, "m", None)
    with pytest.raises(ModelError, match="it is None"):
        codecs_v2.encode_response(None, req, "m", None)
    with pytest.raises(InputError, match="not UTF-8"):
        codecs_v2.encode_response({"out": b"\xff"}, req, "m", None)
