"""The wire formats: JSON, Truss's msgpack, SSE frames and streamed chunks."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import pathlib
import subprocess
import sys
import textwrap
from decimal import Decimal
from uuid import UUID

import msgpack
import numpy as np
import orjson
import pytest

from kingpost.codecs import (
    JSON,
    MSGPACK_TYPES,
    chunk_bytes,
    decode_json,
    decode_msgpack,
    encode_json,
    encode_msgpack,
    encode_sse_event,
    wants_msgpack,
)
from kingpost.errors import InputError, ModelError

UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def truss_values() -> dict[str, object]:
    return {
        "plain": {"a": [1, 2.5, "x", None, True], "b": {"c": b"raw"}, "t": (1, 2)},
        "datetime_naive": dt.datetime(2024, 5, 6, 7, 8, 9, 123456),
        "datetime_utc": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        "datetime_offset": dt.datetime(2024, 5, 6, 7, 8, tzinfo=IST),
        "date": dt.date(2024, 2, 29),
        "time": dt.time(12, 34, 56, 789),
        "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7),
        "decimal": Decimal("3.14159"),
        "uuid": UUID("12345678-1234-5678-1234-567812345678"),
        "int32_2x3": np.arange(6, dtype="<i4").reshape(2, 3),
        "float16": np.array([[1.5, -2.0]], dtype="<f2"),
        "bool_0d": np.array(True),
        "complex128": np.array([1 + 2j, -0.5j], dtype="<c16"),
        "fortran": np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3)),
        "strided": np.arange(10, dtype="<i8")[::3],
        "bigendian_u2": np.array([1, 258], dtype=">u2"),
        "empty": np.zeros((0, 3), dtype="<f4"),
        "structured": np.array([(1.5, [1, 2]), (2.5, [3, 4])], dtype=[("a", "<f4"), ("b", "<i2", (2,))]),
        "np_scalars": [np.float32(1.5), np.int64(7), np.bool_(True), np.uint8(255), np.complex64(1 - 1j)],
        "py_complex": complex(1, -2),
        "nested": {"inputs": [np.ones(2, dtype="<f4"), {"when": dt.date(2000, 1, 1), "id": UUID(int=1)}]},
    }


# Captured once from real Truss: truss 0.18.36 (msgpack 1.2.4, msgpack-numpy 0.4.8, numpy 2.4.6) in a
# throwaway venv, `truss.templates.shared.serialization.truss_msgpack_serialize(v).hex()` for each
# value of truss_values().
TRUSS_HEX = {
    "plain": "83a1619501cb4004000000000000a178c0c3a16281a163c403726177a174920102",
    "datetime_naive": "82c4135f5f64745f6461746574696d655f69736f5f5fc3c40464617461ba323032342d30352d3036543037"
    "3a30383a30392e313233343536",
    "datetime_utc": "82c4135f5f64745f6461746574696d655f69736f5f5fc3c40464617461b4323032342d30352d30365430373a"
    "30383a30395a",
    "datetime_offset": "82c4135f5f64745f6461746574696d655f69736f5f5fc3c40464617461b9323032342d30352d3036543037"
    "3a30383a30302b30353a3330",
    "date": "82c40f5f5f64745f646174655f69736f5f5fc3c40464617461aa323032342d30322d3239",
    "time": "82c40f5f5f64745f74696d655f69736f5f5fc3c40464617461af31323a33343a35362e303030373839",
    "timedelta": "82c4105f5f64745f74696d6564656c74615f5fc3c4046461746193ff0507",
    "decimal": "82c40b5f5f646563696d616c5f5fc3c40464617461a7332e3134313539",
    "uuid": "82c4085f5f757569645f5fc3c40464617461d92431323334353637382d313233342d353637382d31323334"
    "2d353637383132333435363738",
    "int32_2x3": "85c4026e64c3c40474797065a33c6934c4046b696e64c400c4057368617065920203c40464617461c418000000"
    "000100000002000000030000000400000005000000",
    "float16": "85c4026e64c3c40474797065a33c6632c4046b696e64c400c4057368617065920102c40464617461c404003e00c0",
    "bool_0d": "85c4026e64c3c40474797065a37c6231c4046b696e64c400c405736861706590c40464617461c40101",
    "complex128": "85c4026e64c3c40474797065a43c633136c4046b696e64c400c40573686170659102c40464617461c42000"
    "0000000000f03f00000000000000400000000000000080000000000000e0bf",
    "fortran": "85c4026e64c3c40474797065a33c6638c4046b696e64c400c4057368617065920203c40464617461c43000000000"
    "00000000000000000000f03f0000000000000040000000000000084000000000000010400000000000001440",
    "strided": "85c4026e64c3c40474797065a33c6938c4046b696e64c400c40573686170659104c40464617461c42000000000"
    "00000000030000000000000006000000000000000900000000000000",
    "bigendian_u2": "85c4026e64c3c40474797065a33e7532c4046b696e64c400c40573686170659102c40464617461c40400010102",
    "empty": "85c4026e64c3c40474797065a33c6634c4046b696e64c400c4057368617065920003c40464617461c400",
    "structured": "85c4026e64c3c404747970659292a161a33c663493a162a33c69329102c4046b696e64c40156c4057368617065"
    "9102c40464617461c4100000c03f010002000000204003000400",
    "np_scalars": "9583c4026e64c2c40474797065a33c6634c40464617461c4040000c03f83c4026e64c2c40474797065a33c693"
    "8c40464617461c408070000000000000083c4026e64c2c40474797065a37c6231c40464617461c4010183c4026e64c2c404"
    "74797065a37c7531c40464617461c401ff83c4026e64c2c40474797065a33c6338c40464617461c4080000803f000080bf",
    "py_complex": "82c407636f6d706c6578c3c40464617461a628312d326a29",
    "nested": "81a6696e707574739285c4026e64c3c40474797065a33c6634c4046b696e64c400c40573686170659102c40464"
    "617461c4080000803f0000803f82a47768656e82c40f5f5f64745f646174655f69736f5f5fc3c40464617461aa3230"
    "30302d30312d3031a2696482c4085f5f757569645f5fc3c40464617461d92430303030303030302d303030302d3030"
    "30302d303030302d303030303030303030303031",
}

# Truss (msgpack-numpy) pickles object arrays: np.array([1, "a"], dtype=object), captured as above.
TRUSS_PICKLED_OBJECT_ARRAY = bytes.fromhex(
    "85c4026e64c3c404747970659192a0a27c4fc4046b696e64c4014fc40573686170659102c40464617461c4cd8002636e756d"
    "70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e646172726179"
    "0a71014b00857102635f636f646563730a656e636f64650a7103580100000062710458060000006c6174696e3171058671"
    "06527107877108527109284b014b0285710a636e756d70790a64747970650a710b58020000004f38710c898887710d5271"
    "0e284b0358010000007c710f4e4e4e4affffffff4affffffff4b3f74711062895d7111284b01580100000061711265747113"
    "622e"
)


def assert_same(got: object, expected: object) -> None:
    """Equal values of equal types; arrays compared by dtype, shape and contents."""
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert np.array_equal(got, expected, equal_nan=expected.dtype.kind in "fcmM")
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected)
        for key, value in expected.items():
            assert_same(got[key], value)
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(expected)
        for item, value in zip(got, expected, strict=True):
            assert_same(item, value)
    else:
        assert type(got) is type(expected) and (got == expected or repr(got) == repr(expected))  # NaN
        if isinstance(expected, (dt.datetime, dt.time)):
            assert isinstance(got, (dt.datetime, dt.time))
            assert got.utcoffset() == expected.utcoffset()


# --- msgpack: byte-compatible with Truss ---


@pytest.mark.parametrize("name", list(TRUSS_HEX))
def test_msgpack_encoding_is_byte_identical_to_truss(name: str) -> None:
    assert encode_msgpack(truss_values()[name]) == bytes.fromhex(TRUSS_HEX[name])


@pytest.mark.parametrize("name", list(TRUSS_HEX))
def test_msgpack_decodes_what_truss_sends(name: str) -> None:
    assert_same(decode_msgpack(bytes.fromhex(TRUSS_HEX[name])), truss_values()[name])


ARRAYS = [
    np.arange(12, dtype=np.int8).reshape(3, 4),
    np.array([0, 2**64 - 1], dtype=np.uint64),
    np.linspace(-1, 1, 7, dtype=np.float16),
    np.array([np.nan, np.inf, -0.0], dtype=np.float32),
    np.random.default_rng(0).standard_normal((2, 3, 4)),
    np.array([1 + 1j, np.nan], dtype=np.complex64),
    np.array([[True, False]]),
    np.array(3.5),
    np.array(7, dtype=np.int16),
    np.zeros((0,), dtype=np.int32),
    np.zeros((2, 0, 5), dtype=np.float64),
    np.arange(24, dtype=np.float64).reshape(2, 3, 4).transpose(2, 0, 1),
    np.array(["2024-01-01T12:00", "NaT"], dtype="datetime64[m]"),
    np.array([1, -2], dtype="timedelta64[us]"),
    np.array(["ab", "ü"], dtype="<U2"),
    np.array([b"xyz", b""], dtype="S3"),
    np.zeros(3, dtype=[("x", "<f8"), ("inner", [("y", "u1"), ("z", ">i4", (2,))])]),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{list(a.shape)}")
def test_msgpack_round_trips_arrays(array: np.ndarray) -> None:
    assert_same(decode_msgpack(encode_msgpack({"a": array})), {"a": array})


ROUND_TRIP = [
    dt.datetime(1999, 12, 31, 23, 59, 59),
    dt.datetime(2024, 1, 1, tzinfo=UTC),
    dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
    dt.date(1, 1, 1),
    dt.time(0, 0),
    dt.time(23, 59, 59, 999999),
    dt.time(1, 2, 3, tzinfo=IST),  # Truss's encoder refuses this; its decoder reads ours
    dt.timedelta(0),
    dt.timedelta(days=-3, hours=5, microseconds=-1),
    Decimal("-1.000000000000000000000001"),
    Decimal("NaN"),
    UUID(int=0),
    complex(0, 1),
    {"deep": [[{"at": dt.date(2020, 1, 1)}], {"n": np.float32(2.5), "u": UUID(int=5)}], "bin": b"\x00\xff"},
    [None, True, -(2**63), 2**64 - 1, 1.5, "é", []],
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_msgpack_round_trips_values(value: object) -> None:
    assert_same(decode_msgpack(encode_msgpack(value)), value)


class Tensorish:
    def tolist(self) -> list[int]:
        return [1, 2]


class Modelish:
    def model_dump(self) -> dict[str, object]:
        return collections.OrderedDict(when=dt.date(2024, 1, 1))


class Color(enum.Enum):
    RED = "r"


@dataclasses.dataclass
class Point:
    x: int
    when: dt.date


def test_msgpack_converts_what_truss_cannot_encode_into_plain_values() -> None:
    value = {
        "objects": np.array([1, "a", None], dtype=object),
        "set": {3},
        "path": pathlib.PurePosixPath("/a/b"),
        "enum": Color.RED,
        "point": Point(1, dt.date(2000, 1, 2)),
        "day": np.datetime64("2024-01-02"),
        "model": Modelish(),
        "tensor": Tensorish(),
    }
    assert decode_msgpack(encode_msgpack(value)) == {
        "objects": [1, "a", None],
        "set": [3],
        "path": "/a/b",
        "enum": "r",
        "point": {"x": 1, "when": dt.date(2000, 1, 2)},
        "day": dt.date(2024, 1, 2),
        "model": {"when": dt.date(2024, 1, 1)},
        "tensor": [1, 2],
    }


def test_msgpack_decoded_arrays_share_the_body_like_truss() -> None:
    array = decode_msgpack(encode_msgpack(np.arange(4)))
    assert not array.flags.writeable
    assert np.array_equal(array.copy(), np.arange(4))


def test_msgpack_accepts_utc_written_as_z_on_every_python() -> None:
    body = msgpack.packb({b"__dt_datetime_iso__": True, b"data": "2024-05-06T07:08:09Z"})
    assert decode_msgpack(body) == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_msgpack_leaves_maps_that_only_look_like_markers_alone() -> None:
    # Without b"data" (or with str keys) a map is user data, as in Truss.
    for value in ({b"nd": True, b"shape": [1]}, {"nd": True, "data": b"x"}, {b"__uuid__": True}):
        assert decode_msgpack(msgpack.packb(value)) == value


def test_msgpack_refuses_pickled_object_arrays_from_truss() -> None:
    with pytest.raises(InputError, match="pickled numpy array"):
        decode_msgpack(TRUSS_PICKLED_OBJECT_ARRAY)


def test_msgpack_refuses_object_dtypes_that_would_read_pointers() -> None:
    body = msgpack.packb({b"nd": True, b"type": "|O", b"kind": b"", b"shape": [2], b"data": b"\x01" * 16})
    with pytest.raises(InputError, match="Python objects"):
        decode_msgpack(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the request body is empty; expected msgpack."),
        (b"\xc1", "the request body is not valid msgpack: "),
        (b"\x92\x01", "the request body is not valid msgpack: "),
        (b"\x01\x02", "the request body is not valid msgpack: "),
        (msgpack.packb({1: 2}), "the request body is not valid msgpack: "),
        (
            msgpack.packb({b"nd": True, b"type": "<f8", b"kind": b"", b"shape": [4], b"data": b"\0" * 8}),
            "the request body holds a value Truss's msgpack format cannot carry: ",
        ),
        (
            msgpack.packb({b"__dt_date_iso__": True, b"data": "yesterday"}),
            "the request body holds a value Truss's msgpack format cannot carry: ",
        ),
    ],
)
def test_msgpack_bad_bodies_give_one_sentence(body: bytes, message: str) -> None:
    with pytest.raises(InputError) as info:
        decode_msgpack(body)
    text = str(info.value)
    assert text.startswith(message) and text.endswith(".") and "\n" not in text


def test_msgpack_unserializable_output_is_a_postprocess_error() -> None:
    with pytest.raises(ModelError) as info:
        encode_msgpack({"x": [object()]})
    assert info.value.stage == "postprocess"
    assert str(info.value) == "the output of type dict is not msgpack-serializable: it holds a value of type object."
    with pytest.raises(ModelError, match=r"^the output of type list is not msgpack-serializable: it holds an integer"):
        encode_msgpack([2**64])


# --- JSON ---


def test_json_encodes_numpy_values() -> None:
    value = {
        "f64": np.array([[1.5, 2.0]]),
        "f16": np.array([0.5], dtype=np.float16),
        "strided": np.arange(6)[::2],
        "fortran": np.asfortranarray(np.arange(4).reshape(2, 2)),
        "objects": np.array([1, "a"], dtype=object),
        "zero_d": np.array(3),
        "scalars": [np.float32(0.25), np.int8(-3), np.bool_(False), np.uint64(2**64 - 1)],
    }
    assert orjson.loads(encode_json(value)) == {
        "f64": [[1.5, 2.0]],
        "f16": [0.5],
        "strided": [0, 2, 4],
        "fortran": [[0, 1], [2, 3]],
        "objects": [1, "a"],
        "zero_d": 3,
        "scalars": [0.25, -3, False, 2**64 - 1],
    }


def test_json_encodes_what_orjson_does_not() -> None:
    value = {
        1: (1, 2),
        "set": {"only"},
        "decimal": Decimal("1.10"),
        "bytes": b"\x00\xffhi",
        "path": pathlib.PurePosixPath("/x/y"),
        "tensor": Tensorish(),
        "model": Modelish(),
        "uuid": UUID(int=1),
        "at": dt.datetime(2024, 1, 1, tzinfo=UTC),
    }
    assert orjson.loads(encode_json(value)) == {
        "1": [1, 2],
        "set": ["only"],
        "decimal": "1.10",
        "bytes": "AP9oaQ==",
        "path": "/x/y",
        "tensor": [1, 2],
        "model": {"when": "2024-01-01"},
        "uuid": "00000000-0000-0000-0000-000000000001",
        "at": "2024-01-01T00:00:00+00:00",
    }


def test_json_unserializable_output_is_a_postprocess_error() -> None:
    with pytest.raises(ModelError) as info:
        encode_json(object())
    assert info.value.stage == "postprocess"
    assert str(info.value) == "the output of type object is not JSON-serializable."
    with pytest.raises(ModelError, match=r"^the output of type list is not JSON-serializable: it holds .*complex\.$"):
        encode_json([1j])


def test_json_decodes_bodies() -> None:
    assert decode_json(b'{"inputs": [[1, 2]], "n": null}') == {"inputs": [[1, 2]], "n": None}
    assert decode_json(memoryview(b"[1]")) == [1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the request body is empty; expected JSON."),
        (b"{", "the request body is not valid JSON: "),
        (b"   ", "the request body is not valid JSON: "),
        (b'"\xff"', "the request body is not valid JSON: "),
        (b"[1] [2]", "the request body is not valid JSON: "),
    ],
)
def test_json_bad_bodies_give_one_sentence(body: bytes, message: str) -> None:
    with pytest.raises(InputError) as info:
        decode_json(body)
    text = str(info.value)
    assert text.startswith(message) and text.endswith(".") and "\n" not in text


# --- streaming ---


@pytest.mark.parametrize(
    ("chunk", "frame"),
    [
        ("hello", b"data: hello\n\n"),
        ("", b"data: \n\n"),
        ("a\nb\r\nc\rd", b"data: a\ndata: b\ndata: c\ndata: d\n\n"),
        ("end\n", b"data: end\ndata: \n\n"),
        (b"caf\xc3\xa9 \xff", "data: café \ufffd\n\n".encode()),
        ({"token": "x", "n": np.int64(1)}, b'data: {"token":"x","n":1}\n\n'),
        ([1, 2], b"data: [1,2]\n\n"),
    ],
)
def test_sse_frames(chunk: object, frame: bytes) -> None:
    assert encode_sse_event(chunk) == frame


def test_chunk_bytes() -> None:
    assert chunk_bytes("é") == "é".encode()
    assert chunk_bytes(b"\xff") == b"\xff"
    assert chunk_bytes(bytearray(b"ab")) == b"ab"
    assert chunk_bytes({"a": np.arange(2)}) == b'{"a":[0,1]}'


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/octet-stream", True),
        (b"application/msgpack", True),
        ("Application/X-MsgPack; charset=binary", True),
        (" application/octet-stream ;q=1", True),
        (JSON, False),
        ("application/json; charset=utf-8", False),
        ("", False),
        (None, False),
    ],
)
def test_wants_msgpack(content_type: bytes | str | None, expected: bool) -> None:
    assert wants_msgpack(content_type) is expected
    assert all(wants_msgpack(t) for t in MSGPACK_TYPES)


# --- imports ---


def run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=60)


def test_codecs_never_import_numpy_to_encode() -> None:
    run_python(
        """
        import sys, datetime, decimal, pathlib
        import kingpost.codecs as c
        from kingpost.errors import ModelError
        value = {"s": {1}, "p": pathlib.Path("x"), "d": decimal.Decimal(1), "t": datetime.time(1)}
        c.encode_json(value)
        c.decode_msgpack(c.encode_msgpack(value))
        c.encode_sse_event(value)
        try:
            c.encode_json(object())
        except ModelError:
            pass
        assert "numpy" not in sys.modules, "numpy was imported"
        """
    )


def test_decoding_an_array_without_numpy_is_an_input_error() -> None:
    body = encode_msgpack({"a": np.arange(3)})
    run_python(
        f"""
        import sys
        sys.modules["numpy"] = None  # makes `import numpy` fail, as in an environment without it
        from kingpost.codecs import decode_msgpack
        from kingpost.errors import InputError
        try:
            decode_msgpack({body!r})
        except InputError as exc:
            assert str(exc) == "the request holds a numpy array, but numpy is not installed here.", exc
        else:
            raise AssertionError("no InputError")
        """
    )
