"""Truss's msgpack over HTTP: a client that sends ``application/octet-stream`` gets msgpack back.

Bodies are built and read with kingpost.codecs, which writes Truss's format byte for byte, so
these requests are what a Truss client sends.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import httpx
import numpy as np
import pytest

from kingpost.codecs import decode_msgpack, encode_msgpack
from serving import Server

pytestmark = pytest.mark.timeout(60)

PREDICT = "/v1/models/model:predict"


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/msgpack"])
def test_numpy_array_and_datetime_round_trip(client: httpx.Client, echo: Server, content_type: str) -> None:
    sent = {
        "image": np.arange(12, dtype=np.float32).reshape(3, 4),
        "mask": np.array([True, False, True]),
        "ids": np.array([[1, -2], [3, -4]], dtype=np.int64),
        "at": datetime(2024, 5, 17, 12, 30, 5, 123456, tzinfo=timezone.utc),
        "local": datetime(2024, 5, 17, 12, 30),
        "day": date(2024, 2, 29),
        "span": timedelta(days=1, seconds=2, microseconds=3),
        "price": Decimal("19.99"),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "raw": b"\x00\x01\xff",
        "plain": [1, "two", 3.0, None],
    }
    response = client.post(PREDICT, content=encode_msgpack(sent), headers={"content-type": content_type})
    assert response.status_code == 200, response.content
    assert response.headers["content-type"] == content_type  # Truss answers octet-stream to octet-stream
    answer = decode_msgpack(response.content)
    assert answer["pid"] == echo.pid
    got = answer["echo"]
    assert set(got) == set(sent)
    for key in ("image", "mask", "ids"):
        assert isinstance(got[key], np.ndarray)
        assert got[key].dtype == sent[key].dtype and got[key].shape == sent[key].shape
        np.testing.assert_array_equal(got[key], sent[key])
    for key in ("at", "local", "day", "span", "price", "id", "raw", "plain"):
        assert got[key] == sent[key], key
        assert type(got[key]) is type(sent[key]), key
    assert got["at"].tzinfo is not None and got["local"].tzinfo is None


def test_numpy_outputs_come_back_as_arrays(client: httpx.Client) -> None:
    response = client.post(PREDICT, content=encode_msgpack({"numpy": 2}),
                           headers={"content-type": "application/octet-stream"})
    assert response.status_code == 200
    answer = decode_msgpack(response.content)
    np.testing.assert_array_equal(answer["array"], np.array([[0, 1], [2, 3]], dtype=np.float32))
    assert answer["array"].dtype == np.float32
    assert answer["count"] == 2 and isinstance(answer["count"], np.int64)
    assert answer["half"] == 0.5 and isinstance(answer["half"], np.float32)


def test_content_type_parameters_and_case_are_ignored(client: httpx.Client) -> None:
    response = client.post(PREDICT, content=encode_msgpack([1, 2]),
                           headers={"content-type": "Application/Octet-Stream; charset=binary"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert decode_msgpack(response.content)["echo"] == [1, 2]


def test_errors_answer_json_even_to_a_msgpack_request(client: httpx.Client) -> None:
    response = client.post(PREDICT, content=encode_msgpack({"invalid": "pixels must be 0-255."}),
                           headers={"content-type": "application/octet-stream"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "pixels must be 0-255."}


def test_a_pickled_numpy_array_is_refused_not_unpickled(client: httpx.Client) -> None:
    import msgpack

    body = msgpack.packb({b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": b"\x80\x04."})
    response = client.post(PREDICT, content=body, headers={"content-type": "application/octet-stream"})
    assert response.status_code == 400
    assert "pickle" in response.json()["error"]
