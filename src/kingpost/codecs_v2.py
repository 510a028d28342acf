"""The Open Inference Protocol's tensors (KServe V2, Triton, MLServer): JSON and binary, in and out.

A request is JSON ``{"id", "parameters", "inputs": [{"name", "shape", "datatype", "parameters",
"data"}], "outputs": [{"name", "parameters"}]}``; with the binary tensor data extension the JSON
header is followed by raw tensors, its length in the ``Inference-Header-Content-Length`` header, each
binary input marked ``parameters.binary_data_size``. Inputs become numpy arrays: the array itself for
one input, ``{name: array}`` for several. BYTES become object arrays of ``bytes`` (of ``str`` when the
input's ``parameters.content_type`` is ``"str"``, as MLServer reads it).

A model's output becomes named tensors: a dict gives one tensor per key, anything else one tensor
named after the one declared output (else ``output-0``); arrays, lists, scalars, strings and bytes
(BYTES) are all accepted. An output is sent binary when its ``parameters.binary_data`` asks, or the
request's ``parameters.binary_data_output`` does.

numpy is imported on the first V2 request, never by ``import kingpost``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from kingpost.codecs import encode_json
from kingpost.errors import InputError, ModelError

if TYPE_CHECKING:
    from kingpost.config import Signature

__all__ = ["DATATYPES", "InferRequest", "decode_request", "encode_response", "model_input"]

# The protocol's datatypes and numpy's little-endian names for them (BF16 travels as float32 here).
DATATYPES: dict[str, str] = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "BYTES": "O", "BF16": "<f4",
}
_NUMPY_TO_V2 = {"b": "BOOL", "u1": "UINT8", "u2": "UINT16", "u4": "UINT32", "u8": "UINT64", "i1": "INT8",
                "i2": "INT16", "i4": "INT32", "i8": "INT64", "f2": "FP16", "f4": "FP32", "f8": "FP64"}
# Which numpy kinds JSON data may hold for each datatype family (a float is not an integer).
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
_LENGTH = struct.Struct("<I")
DEFAULT_OUTPUT = "output-0"


@dataclass
class InferRequest:
    """A decoded infer request: inputs in order, what the caller asked of the outputs."""

    id: str | None
    inputs: dict[str, Any]  # name -> numpy array
    requested: dict[str, bool] | None  # output name -> binary, or None for every output
    binary_output: bool  # the default for outputs the caller did not name


def _np() -> Any:
    import numpy

    return numpy


def decode_request(body: bytes, header_length: int | None,
                   loads: Callable[[bytes], Any] | None = None) -> InferRequest:
    """Decode an infer body (JSON, or a JSON header plus binary tensors). Raises InputError.

    No tensor is allocated before its size is checked against the data sent (the body's size
    bounds every tensor), so a claimed shape alone cannot make the server allocate. ``loads``
    decodes the JSON header (the server passes its bounded decoder); without it, orjson's.
    """
    if header_length is not None and not 0 < header_length <= len(body):
        raise InputError(f"Inference-Header-Content-Length is {header_length}, but the body holds {len(body)} bytes.")
    header = body if header_length is None else body[:header_length]
    if not header:
        raise InputError("the request body is empty; expected an inference request.")
    if loads is not None:
        request = loads(header)
    else:
        try:
            request = orjson.loads(header)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"the inference request is not valid JSON: {exc}.") from exc
    if not isinstance(request, dict):
        raise InputError("the inference request must be a JSON object with an 'inputs' list.")
    params = _params(request, "the request")
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InputError("the inference request must hold a non-empty 'inputs' list.")
    binary = memoryview(body)[header_length:] if header_length is not None else memoryview(b"")
    offset = 0
    inputs: dict[str, Any] = {}
    for spec in raw_inputs:
        name, datatype, shape, in_params = _tensor_head(spec)
        if name in inputs:
            raise InputError(f"input {name!r} appears twice.")
        size = in_params.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InputError(f"input {name!r}: binary_data_size {size!r} does not fit the "
                                 f"{len(binary) - offset} binary bytes left in the body.")
            array = _from_binary(name, datatype, shape, binary[offset:offset + size])
            offset += size
        elif "data" in spec:
            array = _from_json(name, datatype, shape, spec["data"])
        else:
            raise InputError(f"input {name!r} has neither 'data' nor parameters.binary_data_size.")
        if datatype == "BYTES" and in_params.get("content_type") == "str":
            array = _to_str(name, array)
        inputs[name] = array
    if offset != len(binary):
        raise InputError(f"the body holds {len(binary) - offset} binary bytes that no input claims.")
    requested = None
    raw_outputs = request.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InputError("'outputs' must be a list of {\"name\": ...} objects.")
        requested = {}
        for out in raw_outputs:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise InputError("each requested output must be an object with a string 'name'.")
            out_params = _params(out, f"output {out['name']!r}")
            requested[out["name"]] = bool(out_params.get("binary_data", params.get("binary_data_output", False)))
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError(f"'id' must be a string, found {type(request_id).__name__}.")
    return InferRequest(request_id, inputs, requested, bool(params.get("binary_data_output", False)))


def model_input(request: InferRequest) -> Any:
    """What the model's preprocess receives: the array for one input, ``{name: array}`` for several."""
    if len(request.inputs) == 1:
        return next(iter(request.inputs.values()))
    return request.inputs


def check_inputs(request: InferRequest, signature: Signature) -> None:
    """Hold the inputs to the declared ones: names, datatypes and shapes (-1 matches any size)."""
    declared = {t.name: t for t in signature.inputs}
    for name, array in request.inputs.items():
        spec = declared.get(name)
        if spec is None:
            raise InputError(f"input {name!r} is not one of the model's inputs ({', '.join(declared)}).")
        if _datatype_of(array, spec.datatype) != spec.datatype and spec.datatype != "BF16":
            raise InputError(f"input {name!r} must be {spec.datatype}, found {_datatype_of(array, None)}.")
        if not _shape_fits(array.shape, spec.shape):
            raise InputError(f"input {name!r} must have shape {list(spec.shape)}, found {list(array.shape)}.")
    missing = [name for name in declared if name not in request.inputs]
    if missing:
        raise InputError(f"the request lacks the model's input(s) {', '.join(map(repr, missing))}.")


def encode_response(output: Any, request: InferRequest, model_name: str, signature: Signature | None,
                    version: str | None = None) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the length of its JSON header."""
    tensors = _named(output, signature)
    declared = {t.name: t.datatype for t in signature.outputs} if signature is not None else {}
    requested = request.requested
    if requested is not None:
        unknown = [name for name in requested if name not in tensors]
        if unknown:
            raise InputError(f"the model has no output {unknown[0]!r}; it returns {', '.join(tensors) or 'none'}.")
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, value in tensors.items():
        if requested is not None and name not in requested:
            continue
        array, datatype = _to_array(name, value, declared.get(name))
        binary = requested[name] if requested is not None else request.binary_output
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            blob = (_bytes_blob(array) if datatype == "BYTES"
                    else array.astype(DATATYPES[datatype], copy=False).tobytes())
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = _json_data(name, array, datatype)
        outputs.append(tensor)
    answer: dict[str, Any] = {"model_name": model_name}
    if version is not None:
        answer["model_version"] = version
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = outputs
    head = encode_json(answer)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


# -- inputs ---------------------------------------------------------------------------------------

def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InputError(f"{where}: 'parameters' must be a JSON object.")
    return params


def _tensor_head(spec: Any) -> tuple[str, str, tuple[int, ...], dict[str, Any]]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InputError("each input must be an object with a string 'name', 'shape', 'datatype' and 'data'.")
    name = spec["name"]
    datatype = spec.get("datatype")
    if datatype not in DATATYPES:
        raise InputError(f"input {name!r}: datatype must be one of {', '.join(DATATYPES)}, found {datatype!r}.")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InputError(f"input {name!r}: shape must be a list of non-negative integers, found {shape!r}.")
    return name, datatype, tuple(shape), _params(spec, f"input {name!r}")


def _from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> Any:
    np = _np()
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = _flatten(data)
        if len(flat) != count:
            raise InputError(f"input {name!r}: shape {list(shape)} needs {count} elements, found {len(flat)}.")
        array = np.empty(count, dtype=object)
        for i, item in enumerate(flat):
            if not isinstance(item, str):
                raise InputError(f"input {name!r}: BYTES data must be strings, found {type(item).__name__}.")
            array[i] = item.encode()
        return array.reshape(shape)
    if datatype == "BF16":
        raise InputError(f"input {name!r}: BF16 travels only as binary data.")
    try:
        found = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"input {name!r}: data is not a rectangular array of numbers: {exc}.") from exc
    if found.size != count:
        raise InputError(f"input {name!r}: shape {list(shape)} needs {count} elements, found {found.size}.")
    dtype = np.dtype(DATATYPES[datatype])
    if found.size and found.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise InputError(f"input {name!r}: {datatype} data must be {_KIND_WORDS[dtype.kind]}, "
                         f"found {_KIND_WORDS.get(found.dtype.kind, found.dtype.name)}.")
    if dtype.kind in "iu" and found.size:
        info = np.iinfo(dtype)
        if found.min() < info.min or found.max() > info.max:
            raise InputError(f"input {name!r}: a value is outside the range of {datatype}.")
    return found.astype(dtype, copy=False).reshape(shape)


_KIND_WORDS = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers", "U": "strings", "O": "mixed values"}


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(x, list) for x in data):
        return data
    out: list[Any] = []
    for x in data:
        out.extend(_flatten(x))
    return out


def _from_binary(name: str, datatype: str, shape: tuple[int, ...], raw: memoryview) -> Any:
    np = _np()
    count = math.prod(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        pos, end = 0, len(raw)
        while pos < end:
            if pos + 4 > end:
                raise InputError(f"input {name!r}: BYTES data ends inside an element's length.")
            (size,) = _LENGTH.unpack_from(raw, pos)
            pos += 4
            if pos + size > end:
                raise InputError(f"input {name!r}: a BYTES element runs past the input's binary_data_size.")
            items.append(bytes(raw[pos:pos + size]))
            pos += size
        if len(items) != count:
            raise InputError(f"input {name!r}: shape {list(shape)} needs {count} elements, found {len(items)}.")
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    itemsize = 2 if datatype == "BF16" else np.dtype(DATATYPES[datatype]).itemsize
    if len(raw) != count * itemsize:
        raise InputError(f"input {name!r}: shape {list(shape)} of {datatype} needs {count * itemsize} bytes, "
                         f"found {len(raw)}.")
    if datatype == "BF16":  # the upper half of a float32
        return (np.frombuffer(raw, dtype="<u2").astype("<u4") << 16).view("<f4").reshape(shape)
    return np.frombuffer(raw, dtype=DATATYPES[datatype]).reshape(shape)


def _to_str(name: str, array: Any) -> Any:
    out = array.copy()
    try:
        for i, item in enumerate(array.flat):
            out.flat[i] = item.decode()
    except UnicodeDecodeError as exc:
        raise InputError(f"input {name!r} has content_type str but holds bytes that are not UTF-8.") from exc
    return out


# -- outputs --------------------------------------------------------------------------------------

def _named(output: Any, signature: Signature | None) -> dict[str, Any]:
    declared = [t.name for t in signature.outputs] if signature is not None else []
    if isinstance(output, dict):
        return {str(k): v for k, v in output.items()}
    if len(declared) > 1 and isinstance(output, (list, tuple)) and len(output) == len(declared):
        return dict(zip(declared, output, strict=True))
    return {declared[0] if declared else DEFAULT_OUTPUT: output}


def _to_array(name: str, value: Any, declared: str | None) -> tuple[Any, str]:
    np = _np()
    if value is None:
        raise _bad_output(name, "it is None")
    if isinstance(value, (str, bytes)):
        value = [value]
        array = np.empty(1, dtype=object)
        array[0] = value[0]
    else:
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise _bad_output(name, f"it is not a rectangular array ({exc})") from exc
    kind = array.dtype.kind
    if declared == "BYTES" or kind in "USO":
        if kind == "O" and array.size and any(isinstance(x, (dict, list)) for x in array.flat):
            raise _bad_output(name, "it holds nested objects, which are not a tensor")
        return array, "BYTES"
    if declared is not None and declared != "BF16":
        try:
            return array.astype(DATATYPES[declared], copy=False), declared
        except (ValueError, TypeError) as exc:
            raise _bad_output(name, f"it cannot be read as the declared {declared} ({exc})") from exc
    key = "b" if kind == "b" else f"{kind}{array.dtype.itemsize}"
    datatype = _NUMPY_TO_V2.get(key)
    if datatype is None:
        raise _bad_output(name, f"numpy dtype {array.dtype} has no V2 datatype")
    return array, datatype


def _bad_output(name: str, why: str) -> ModelError:
    return ModelError("postprocess", f"output {name!r} cannot be sent as a V2 tensor: {why}.")


def _text(item: Any) -> str:
    if isinstance(item, bytes):
        return item.decode()
    return str(item)


def _json_data(name: str, array: Any, datatype: str) -> Any:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        try:
            return [_text(x) for x in flat.tolist()]
        except UnicodeDecodeError as exc:
            raise InputError(f"output {name!r} holds bytes that are not UTF-8; request it with "
                             "parameters.binary_data true.") from exc
    if flat.flags.c_contiguous and flat.dtype.isnative:
        return flat  # orjson writes native numpy arrays itself, fast
    return flat.tolist()


def _bytes_blob(array: Any) -> bytes:
    parts: list[bytes] = []
    for item in array.reshape(-1).tolist():
        data = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _datatype_of(array: Any, hint: str | None) -> str:
    kind = array.dtype.kind
    if kind in "USO":
        return "BYTES"
    return _NUMPY_TO_V2.get("b" if kind == "b" else f"{kind}{array.dtype.itemsize}", str(array.dtype))


def _shape_fits(shape: tuple[int, ...], declared: tuple[int, ...]) -> bool:
    return len(shape) == len(declared) and all(d in (-1, s) for s, d in zip(shape, declared, strict=True))
