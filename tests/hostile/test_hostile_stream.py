"""A streaming client that reads nothing: predict's generator waits for it, within a bound.

tests/bundles/stream_flood streams up to 2 GiB in 1 MiB chunks with ``stream_buffer_bytes`` 4 MiB
and ``write_timeout_s: 3``. Bounds stated here: while the client reads nothing, the generator gets
no further than 24 chunks (the buffer, the socket buffers and one chunk in hand) and the server's
RSS grows less than 80 MiB (the old server buffered all of it: 238 MB for 200 MiB); 3 s after the
client stopped reading, the server disconnects it and the generator is closed within 2 s more;
a client that leaves mid-stream frees the slot within one chunk.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hostile_http import PREDICT, eventually, head, memory_kb, serve_copy

from serving import Server

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = serve_copy(tmp_path_factory, "stream_flood")
    yield started
    started.stop()


def _progress(log: Path) -> str:
    return log.read_text() if log.exists() else ""


def test_a_client_that_reads_nothing_holds_the_generator_back(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "log"
    before = memory_kb(server.pid)
    body = json.dumps({"chunks": 2048, "size": MIB, "log": str(log)}).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect((server.host, server.port))
        sock.sendall(head("POST", PREDICT, "localhost", "Content-Type: application/json", body=body))
        stopped_reading = time.monotonic()
        time.sleep(1.5)  # reads nothing
        produced = _progress(log)
        assert produced and not produced.startswith("closed"), produced
        assert int(produced) <= 24, f"the generator ran {produced} chunks ahead of a client that reads nothing"
        grown = (memory_kb(server.pid) - before) / 1024
        print(f"non-reading client: generator at chunk {produced}, RSS +{grown:.0f} MiB")
        assert grown < 80, f"RSS grew {grown:.0f} MiB"
        # Past write_timeout_s the server gives up on the client and the generator is closed.
        closed = eventually(lambda: _progress(log).startswith("closed") and _progress(log), 3 + 2 + 1,
                            "the generator to be closed")
        assert time.monotonic() - stopped_reading < 3 + 2 + 1.5
        assert int(closed.split()[1]) <= 24
    # The slot is free again.
    follow = httpx.post(server.url + PREDICT, json={"chunks": 2, "size": 3, "log": str(tmp_path / "next")},
                        timeout=10)
    assert follow.content == b"xxxxxx"


def test_a_client_that_leaves_mid_stream_frees_the_slot(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "log"
    body = json.dumps({"chunks": 2048, "size": MIB, "log": str(log)}).encode()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head("POST", PREDICT, "localhost", "Content-Type: application/json", body=body))
        eventually(lambda: _progress(log) not in ("", "0"), 5, "the stream to start")
    left = time.monotonic()
    eventually(lambda: _progress(log).startswith("closed"), 2, "the generator to be closed")
    assert time.monotonic() - left < 2
