"""Hostile bodies: decode bombs, deep nesting, wrong media types, oversize bodies announced up front.

Bounds stated here (the server runs with the default limits unless a test says otherwise):
- a 15 MiB msgpack body of empty maps (1 byte each; 3.0 GB of Python objects on the old server for
  40 MB) is a 413 with the server's peak RSS growing less than 200 MiB, and a client predicting
  meanwhile never waits more than 1.5 s for an answer (the old server stalled everyone 8 s);
- a 15 MiB JSON body of empty lists is a 413 before anything is decoded, peak RSS growth < 100 MiB;
- a legitimate 3 MB JSON body (decoded off the event loop) still answers 200 with its data.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgpack
import pytest
from hostile_http import PREDICT, LatencyProbe, head, memory_kb, read_answer, serve_copy

from serving import Server

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = serve_copy(tmp_path_factory, "server_echo", drop=("max_request_bytes",))  # the default limit
    yield started
    started.stop()


def _post(server: Server, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(server.url + PREDICT, content=body, headers={"content-type": content_type}, timeout=60)


def test_a_msgpack_bomb_is_refused_within_memory_and_others_keep_being_answered(server: Server) -> None:
    count = 15 * MIB
    bomb = b"\xdd" + struct.pack(">I", count) + b"\x80" * count  # an array of 15 Mi empty maps
    before = memory_kb(server.pid, "VmHWM")
    with LatencyProbe(server.host, server.port) as probe:
        time.sleep(0.3)
        response = _post(server, bomb, "application/msgpack")
        time.sleep(0.3)
    assert response.status_code == 413, response.text
    assert "max_decode_elements" in response.json()["error"]
    grown_mib = (memory_kb(server.pid, "VmHWM") - before) / 1024
    print(f"msgpack bomb: peak RSS +{grown_mib:.0f} MiB, worst other latency {max(probe.latencies):.3f} s")
    assert grown_mib < 200, f"peak RSS grew {grown_mib:.0f} MiB"
    assert not probe.failures
    assert len(probe.latencies) >= 3
    assert max(probe.latencies) < 1.5, f"another client waited {max(probe.latencies):.2f} s"


def test_a_json_bomb_is_refused_before_it_is_decoded(server: Server) -> None:
    bomb = b"[" + b"[]," * (5 * MIB) + b"[]]"
    before = memory_kb(server.pid, "VmHWM")
    response = _post(server, bomb, "application/json")
    assert response.status_code == 413, response.text
    assert "max_decode_elements" in response.json()["error"]
    assert (memory_kb(server.pid, "VmHWM") - before) / 1024 < 100


def test_a_big_legitimate_json_body_is_decoded_off_the_loop_and_answered(server: Server) -> None:
    values = [i * 0.5 for i in range(300_000)]  # ~3 MB: over decode_in_thread_bytes
    response = _post(server, json.dumps({"x": values}).encode(), "application/json")
    assert response.status_code == 200
    assert response.json()["echo"]["x"] == values


@pytest.mark.parametrize("depth", [65, 300, 1000])
def test_deep_json_is_a_400_naming_the_limit_not_a_500(server: Server, depth: int) -> None:
    response = _post(server, b"[" * depth + b"]" * depth, "application/json")
    assert response.status_code == 400, response.text
    assert "max_decode_depth" in response.json()["error"]


def test_deep_msgpack_is_a_400_and_the_limit_is_exact(server: Server) -> None:
    deep = b"\x91" * 64 + b"\x90"  # 65 levels
    response = _post(server, deep, "application/msgpack")
    assert response.status_code == 400, response.text
    assert "max_decode_depth" in response.json()["error"]
    ok = b"\x91" * 63 + b"\x90"  # 64 levels: allowed
    response = _post(server, ok, "application/msgpack")
    assert response.status_code == 200, response.text
    assert msgpack.unpackb(response.content)["echo"] is not None


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_json_or_msgpack_is_a_415(server: Server, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = httpx.post(server.url + PREDICT, content=b'{"a": 1}', headers=headers, timeout=10)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["error"]


def test_json_with_a_charset_is_accepted(server: Server) -> None:
    response = _post(server, b'{"a": 1}', "Application/JSON; charset=utf-8")
    assert response.status_code == 200
    assert response.json()["echo"] == {"a": 1}


def test_expect_100_continue_with_an_oversize_length_is_a_413_at_once(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head("POST", PREDICT, "localhost", "Content-Type: application/json", "Expect: 100-continue",
                          f"Content-Length: {1024 * MIB}"))
        start = time.monotonic()
        status, _, body = read_answer(sock)
        assert status == 413
        assert "max_request_bytes" in json.loads(body)["error"]
        assert time.monotonic() - start < 2


def test_the_default_body_limit_is_16_mib(server: Server, copy_bundle: Callable[..., Path]) -> None:
    response = _post(server, b" " * (16 * MIB + 1), "application/json")
    assert response.status_code == 413
    assert "allows 16777216" in response.json()["error"]
