"""The access log: one stderr line per predict request with its status and latency; probes unlogged."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from serving import Server

pytestmark = pytest.mark.timeout(60)

PREDICT = "/v1/models/model:predict"
LINE = re.compile(r'127\.0\.0\.1:\d+ "POST /v1/models/model:predict" (\d{3}) \d+\.\dms$')


def access_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if '"GET ' in line or '"POST ' in line]


def test_one_line_per_predict_request_and_none_for_probes(serve: Callable[..., Server]) -> None:
    server = serve("server_echo")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # Probes first: had they been logged, their lines would be in stderr before the predicts'.
        for _ in range(3):
            assert client.get("/").status_code == 200
            assert client.get("/v1/models/model").status_code == 200
        assert client.post(PREDICT, json={"ok": 1}).status_code == 200
        assert client.post(PREDICT, json={"invalid": "no."}).status_code == 400
        assert client.post(PREDICT, json={"raise": "boom"}).status_code == 500
    server.wait_for_stderr(LINE.pattern, count=3)

    lines = access_lines(server.stderr())
    assert [LINE.search(line)[1] for line in lines if LINE.search(line)] == ["200", "400", "500"]
    assert len(lines) == 3, lines  # nothing for GET / or readiness


def test_no_access_log_logs_no_requests(serve: Callable[..., Server]) -> None:
    server = serve("server_echo", "--no-access-log")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post(PREDICT, json={"ok": 1}).status_code == 200
    assert server.stop() == 0  # everything it would log is written by now
    assert access_lines(server.stderr()) == []
