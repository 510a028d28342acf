"""The wire formats: JSON, Truss's msgpack, Server-Sent Events and streamed chunks.

The msgpack format is Truss's own (``truss/templates/shared/serialization.py``): msgpack with
``use_bin_type=True``; datetime, date, time, timedelta, Decimal and UUID become small maps with
bytes keys such as ``{b"__uuid__": True, b"data": "..."}``; numpy arrays and scalars use
msgpack-numpy's maps ``{b"nd": True, b"type": dtype.str, b"kind": b"", b"shape": [...],
b"data": raw bytes}``. Values Truss can encode come out byte for byte as Truss writes them.
Where Truss would pickle (object arrays) we send plain lists, and we never unpickle.

numpy is never imported here to encode: if it is not in ``sys.modules``, no value can be a numpy
value. It is imported only to decode an array a client sent.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from base64 import b64encode
from collections import deque
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

import msgpack
import orjson

from kingpost.errors import InputError, ModelError

__all__ = [
    "JSON",
    "MSGPACK_TYPES",
    "PassThrough",
    "chunk_bytes",
    "decode_json",
    "decode_msgpack",
    "encode_json",
    "encode_msgpack",
    "encode_sse_event",
    "is_response",
    "msgpack_object_hook",
    "wants_msgpack",
]

JSON = "application/json"
MSGPACK_TYPES = frozenset({"application/octet-stream", "application/msgpack", "application/x-msgpack"})

# orjson imports numpy the first time it meets a non-native value under OPT_SERIALIZE_NUMPY,
# so the option is only passed once something else has imported numpy.
_JSON_OPTS = orjson.OPT_NON_STR_KEYS
_JSON_OPTS_NUMPY = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_LISTLIKE = (set, frozenset, deque)
_MSGPACK_NATIVE = (dict, list, tuple, str, bytes, bytearray, memoryview, int, float, type(None))
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class _Unserializable(TypeError):
    def __init__(self, obj: object, what: str | None = None) -> None:
        self.type_name = type(obj).__qualname__
        self.what = what
        super().__init__(what or self.type_name)


def _convert(obj: Any) -> Any:
    """The conversions both encoders share, for values neither format knows."""
    if isinstance(obj, _LISTLIKE):
        return list(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy values orjson refuses, torch and jax tensors
    if callable(tolist):
        return tolist()
    model_dump = getattr(obj, "model_dump", None)  # pydantic v2 models
    if callable(model_dump):
        return model_dump()
    raise _Unserializable(obj)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return b64encode(obj).decode("ascii")
    if isinstance(obj, Decimal):
        return str(obj)
    return _convert(obj)


def _not_serializable(obj: object, fmt: str, exc: Exception) -> ModelError:
    outer = type(obj).__qualname__
    cause = exc if isinstance(exc, _Unserializable) else exc.__cause__
    if isinstance(cause, _Unserializable):
        if cause.what is None and cause.type_name == outer:
            return ModelError("postprocess", f"the output of type {outer} is not {fmt}-serializable.")
        detail = f"it holds {cause.what or 'a value of type ' + cause.type_name}"
    else:
        detail = _detail(exc)
    return ModelError("postprocess", f"the output of type {outer} is not {fmt}-serializable: {detail}.")


def _detail(exc: Exception) -> str:
    return str(exc).strip().rstrip(".") or type(exc).__name__


class PassThrough(Exception):
    """The output is a response object (Starlette's), to be sent as it is, not encoded.

    Raised only once encoding has failed, so looking for it costs a plain output nothing.
    """

    def __init__(self, response: Any) -> None:
        super().__init__("a response object")
        self.response = response


def is_response(value: Any, kind: str = "Response") -> bool:
    """Whether ``value`` is a Starlette response object (``kind``: a subclass's name, such as
    "StreamingResponse"); Starlette is looked up only once something else has imported it."""
    responses = sys.modules.get("starlette.responses")
    return responses is not None and isinstance(value, getattr(responses, kind))


def encode_json(obj: Any) -> bytes:
    """Encode a model output as compact JSON; numpy values become lists and numbers."""
    option = _JSON_OPTS_NUMPY if "numpy" in sys.modules else _JSON_OPTS
    try:
        return orjson.dumps(obj, default=_json_default, option=option)
    except orjson.JSONEncodeError as exc:
        if is_response(obj):
            raise PassThrough(obj) from None
        raise _not_serializable(obj, "JSON", exc) from exc


def decode_json(body: bytes) -> Any:
    """Decode a JSON request body; raise InputError with one sentence if it is not JSON."""
    if not body:
        raise InputError("the request body is empty; expected JSON.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the request body is not valid JSON: {_detail(exc)}.") from exc


def _msgpack_default(obj: Any) -> Any:
    # Truss's _truss_msgpack_encoder, then msgpack-numpy's encode, then our own fallbacks.
    if isinstance(obj, datetime):
        text = obj.isoformat()
        if text.endswith("+00:00"):
            text = text[:-6] + "Z"
        return {b"__dt_datetime_iso__": True, b"data": text}
    if isinstance(obj, date):
        return {b"__dt_date_iso__": True, b"data": obj.isoformat()}
    if isinstance(obj, time):  # Truss refuses aware times; its decoder reads them fine
        return {b"__dt_time_iso__": True, b"data": obj.isoformat()}
    if isinstance(obj, timedelta):
        return {b"__dt_timedelta__": True, b"data": (obj.days, obj.seconds, obj.microseconds)}
    if isinstance(obj, Decimal):
        return {b"__decimal__": True, b"data": str(obj)}
    if isinstance(obj, UUID):
        return {b"__uuid__": True, b"data": str(obj)}
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.ndarray):
            return _encode_ndarray(obj)
        if isinstance(obj, (np.bool_, np.number)):
            return {b"nd": False, b"type": obj.dtype.str, b"data": obj.tobytes()}
    if isinstance(obj, complex):
        return {b"complex": True, b"data": repr(obj)}
    if isinstance(obj, int):  # msgpack hands over the ints it cannot pack
        raise _Unserializable(obj, "an integer outside the 64-bit range")
    if isinstance(obj, Enum):
        converted = obj.value
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        converted = dataclasses.asdict(obj)
    else:
        converted = _convert(obj)
    # msgpack calls default once per value: a conversion to, say, a date must go through it again here.
    if isinstance(converted, _MSGPACK_NATIVE):
        return converted
    if type(converted) is type(obj):
        raise _Unserializable(obj)
    return _msgpack_default(converted)


def _encode_ndarray(array: Any) -> Any:
    dtype = array.dtype
    if dtype.hasobject:
        return array.tolist()  # msgpack-numpy would pickle these
    if dtype.kind == "V":
        kind, descr = b"V", dtype.descr
    else:
        kind, descr = b"", dtype.str
    try:  # zero-copy where numpy exposes a buffer (not for datetime64, nor non-contiguous arrays)
        data = array.data if array.flags.c_contiguous else array.tobytes()
    except ValueError:
        data = array.tobytes()
    return {b"nd": True, b"type": descr, b"kind": kind, b"shape": array.shape, b"data": data}


def encode_msgpack(obj: Any) -> bytes:
    """Encode a model output in Truss's msgpack format (numpy arrays included)."""
    try:
        packed: bytes = msgpack.packb(obj, default=_msgpack_default)
    except (TypeError, ValueError, OverflowError) as exc:
        if is_response(obj):
            raise PassThrough(obj) from None
        raise _not_serializable(obj, "msgpack", exc) from exc
    return packed


def _datetime(text: str) -> datetime:
    # Truss writes UTC as "Z", which datetime.fromisoformat reads only from Python 3.11 on.
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def _unpack_descr(descr: Any) -> Any:
    # msgpack turns the tuples of a structured dtype's descr into lists; numpy wants tuples.
    if isinstance(descr, (list, tuple)):
        return [(_str(name), _unpack_descr(sub), *map(_shape, shape)) for name, sub, *shape in descr]
    return _str(descr)


def _dtype(np: Any, descr: Any) -> Any:
    dtype = np.dtype(_unpack_descr(descr))
    if dtype.hasobject:  # numpy would read object pointers out of the client's bytes
        raise InputError("the request holds a numpy array of Python objects, which kingpost does not accept.")
    return dtype


def _shape(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _str(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _decode_numpy(obj: dict[Any, Any]) -> Any:
    try:
        import numpy as np
    except ImportError as exc:
        raise InputError("the request holds a numpy array, but numpy is not installed here.") from exc
    if obj[b"nd"] is True:
        if obj.get(b"kind") == b"O":
            raise InputError("the request holds a pickled numpy array, which kingpost does not unpickle.")
        return np.ndarray(buffer=obj[b"data"], dtype=_dtype(np, obj[b"type"]), shape=obj[b"shape"])
    return np.frombuffer(obj[b"data"], dtype=_dtype(np, obj[b"type"]))[0]


def _timedelta(data: Any) -> timedelta:
    days, seconds, microseconds = data
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


# Checked in Truss's order; each marker map also carries b"data".
_MARKERS: tuple[tuple[bytes, Callable[[Any], Any]], ...] = (
    (b"__dt_datetime_iso__", _datetime),
    (b"__dt_date_iso__", date.fromisoformat),
    (b"__dt_time_iso__", time.fromisoformat),
    (b"__dt_timedelta__", _timedelta),
    (b"__decimal__", Decimal),
    (b"__uuid__", UUID),
)


def msgpack_object_hook(obj: dict[Any, Any]) -> Any:
    """Truss's decoding of a marker map (a datetime, a numpy array, ...); any other map as it is."""
    if b"data" not in obj:
        return obj
    try:
        for key, decode in _MARKERS:
            if key in obj:
                return decode(obj[b"data"])
        if b"nd" in obj:
            return _decode_numpy(obj)
        if b"complex" in obj:
            return complex(_str(obj[b"data"]))
    except KeyError:
        return obj
    except InputError:
        raise
    except (TypeError, ValueError, ArithmeticError, IndexError, RecursionError) as exc:
        raise InputError(
            f"the request body holds a value Truss's msgpack format cannot carry: {_detail(exc)}."
        ) from exc
    return obj


def decode_msgpack(body: bytes, *, object_hook: Callable[[dict[Any, Any]], Any] | None = None,
                   list_hook: Callable[[list[Any]], Any] | None = None) -> Any:
    """Decode a request body in Truss's msgpack format; numpy arrays come back read-only.

    ``object_hook`` (which must end by calling :func:`msgpack_object_hook`) and ``list_hook`` let
    the server count values as they are built.
    """
    if not body:
        raise InputError("the request body is empty; expected msgpack.")
    try:
        return msgpack.unpackb(body, object_hook=object_hook or msgpack_object_hook, list_hook=list_hook)
    except InputError:
        raise
    except msgpack.ExtraData as exc:
        raise InputError("the request body is not valid msgpack: bytes follow the first value.") from exc
    except msgpack.FormatError as exc:
        raise InputError("the request body is not valid msgpack: it holds a reserved type byte.") from exc
    except msgpack.StackError as exc:
        raise InputError("the request body is not valid msgpack: it is nested too deeply.") from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        detail = _detail(exc)
        if "strict_map_key" in detail:
            detail = "a map key is neither a string nor bytes"
        elif "incomplete input" in detail:
            detail = "it ends in the middle of a value"
        raise InputError(f"the request body is not valid msgpack: {detail}.") from exc


def chunk_bytes(chunk: Any) -> bytes:
    """A streamed chunk as bytes: str as UTF-8, bytes as they are, anything else as JSON."""
    if isinstance(chunk, str):
        return chunk.encode("utf-8", "replace")
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    return encode_json(chunk)


def encode_sse_event(chunk: Any) -> bytes:
    """One Server-Sent Events frame carrying ``chunk``: ``data: <text>\\n\\n``."""
    if isinstance(chunk, str):
        text = chunk
    elif isinstance(chunk, (bytes, bytearray, memoryview)):
        text = bytes(chunk).decode("utf-8", "replace")
    else:
        text = encode_json(chunk).decode()
    if "\n" in text or "\r" in text:
        text = "\ndata: ".join(_LINE_BREAK.split(text))
    return f"data: {text}\n\n".encode("utf-8", "replace")


def wants_msgpack(content_type: bytes | str | None) -> bool:
    """Whether a Content-Type header names msgpack (parameters ignored, any case)."""
    if not content_type:
        return False
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    return content_type.partition(";")[0].strip().lower() in MSGPACK_TYPES
