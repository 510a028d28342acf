"""Hostile connections: huge or endless heads, slow bodies, silent sockets by the thousand, odd methods.

The server runs with short timeouts (head 1.5 s, body 1.5 s, idle 2 s) so the tests stay fast; the
defaults (10 s, 60 s, 30 s) are the same code with other numbers. Bounds stated here:
- a 64 MiB header is answered 431 within 2 s, having cost the server under 1 s of CPU (the old
  server parsed it for 5 s and answered 200);
- a head or body that stops arriving is answered 408 within its timeout plus 1 s;
- 5,000 connections that send nothing are all closed within the head timeout plus 3 s, while a
  real client keeps being answered (every request 200, none slower than 2 s);
- past ``max_connections`` the longest-idle connection is closed to make room for a new one.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hostile_http import PREDICT, READY, LatencyProbe, closed_within, head, read_answer, serve_copy

from serving import Server

pytestmark = pytest.mark.timeout(120)

LIMITS = {"head_timeout_s": 1.5, "body_timeout_s": 1.5, "idle_timeout_s": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = serve_copy(tmp_path_factory, "server_echo", {"limits": LIMITS})
    yield started
    started.stop()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_huge_header_is_a_431_in_bounded_time(server: Server) -> None:
    cpu = _cpu_seconds(server.pid)
    start = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        def flood() -> None:
            line = b"X-Big: " + b"a" * (1024 * 1024 - 9) + b"\r\n"
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
                for _ in range(64):  # 64 MiB of headers
                    sock.sendall(line)
            except OSError:
                pass  # the server closed the connection: what we want

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        status, headers, body = read_answer(sock)
        took = time.monotonic() - start
        sender.join(10)
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert "max_header_bytes" in json.loads(body)["error"]
    assert took < 2, took
    assert _cpu_seconds(server.pid) - cpu < 1.0


def test_too_many_headers_is_a_431(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head("GET", "/", "localhost", *(f"X-H{i}: 1" for i in range(101))))
        status, _, body = read_answer(sock)
    assert status == 431
    assert "max_headers" in json.loads(body)["error"]


def test_a_head_that_stops_arriving_is_a_408(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        start = time.monotonic()
        status, _, body = read_answer(sock)
        assert time.monotonic() - start < 1.5 + 1
    assert status == 408
    assert "head_timeout_s" in json.loads(body)["error"]


def test_a_body_that_stops_arriving_is_a_408(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head("POST", PREDICT, "localhost", "Content-Type: application/json", "Content-Length: 100")
                     + b'{"a": ')
        start = time.monotonic()
        status, _, body = read_answer(sock)
        assert time.monotonic() - start < 1.5 + 1
    assert status == 408
    assert "body_timeout_s" in json.loads(body)["error"]


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head("GET", "/", "localhost"))
        assert read_answer(sock)[0] == 200
        assert closed_within(sock, 2 + 1.5)


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 5000 + 500
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard limit on open files is {hard}; this test needs {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_5000_silent_connections_are_closed_by_the_head_timeout_while_a_client_is_served(
        server: Server, many_descriptors: None) -> None:
    silent: list[socket.socket] = []
    with LatencyProbe(server.host, server.port, every=0.02) as probe:
        try:
            for _ in range(5000):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex((server.host, server.port))
                silent.append(sock)
            opened = time.monotonic()
            # Every one of them is closed by the server (EOF or reset) within the head timeout plus slack.
            by_fd = {sock.fileno(): sock for sock in silent}
            poller = select.poll()
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            waiting = set(by_fd.values())
            while waiting and time.monotonic() - opened < 1.5 + 3:
                for fd, _ in poller.poll(200):
                    sock = by_fd[fd]
                    try:
                        data = sock.recv(1)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        waiting.discard(sock)
                        poller.unregister(fd)
            assert not waiting, f"{len(waiting)} of 5000 silent connections still open"
        finally:
            for sock in silent:
                sock.close()
    assert not probe.failures, probe.failures[:5]
    assert len(probe.latencies) > 10
    assert max(probe.latencies) < 2, max(probe.latencies)


def test_past_max_connections_the_longest_idle_one_makes_room(serve: Callable[..., Server],
                                                             copy_bundle: Callable[..., Path]) -> None:
    server = serve(copy_bundle("server_echo", runtime={"limits": {"max_connections": 20}}))
    idle = [socket.create_connection((server.host, server.port), timeout=10) for _ in range(20)]
    try:
        time.sleep(0.2)
        response = httpx.post(server.url + PREDICT, json={"a": 1}, timeout=10)
        assert response.status_code == 200
        assert closed_within(idle[0], 2)  # the oldest silent connection made room
    finally:
        for sock in idle:
            sock.close()


def test_a_malformed_request_is_a_400_in_json(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost localhost\r\n\r\n")
        status, headers, body = read_answer(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"].startswith("the request is not valid HTTP/1.1")


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/", "GET, HEAD"), ("DELETE", "/metrics", "GET, HEAD"), ("TRACE", READY, "GET, HEAD"),
    ("GET", PREDICT, "POST"), ("DELETE", PREDICT, "POST"),
])
def test_a_wrong_method_is_a_405_with_allow(server: Server, method: str, path: str, allow: str) -> None:
    response = httpx.request(method, server.url + path, timeout=10)
    assert response.status_code == 405
    assert response.headers["allow"] == allow


def test_a_foreign_host_is_refused_on_loopback(server: Server) -> None:
    response = httpx.post(server.url + PREDICT, json={"a": 1}, headers={"host": "evil.example"}, timeout=10)
    assert response.status_code == 400
    assert "allowed_hosts" in response.json()["error"]
    assert httpx.get(server.url + "/metrics", headers={"host": "evil.example:80"}).status_code == 400
    assert httpx.get(server.url + READY, headers={"host": "evil.example"}).status_code == 200  # a probe's Host
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "LOCALHOST"):
        assert httpx.post(server.url + PREDICT, json={"a": 1}, headers={"host": host}).status_code == 200


def test_allowed_hosts_is_a_setting(serve: Callable[..., Server], copy_bundle: Callable[..., Path]) -> None:
    server = serve(copy_bundle("server_echo", runtime={"limits": {"allowed_hosts": ["models.example"]}}),
                   wait="bound")
    assert server.wait_status(READY, 200).status_code == 200  # health checks answer whatever the Host
    ok = httpx.post(server.url + PREDICT, json={"a": 1}, headers={"host": "models.example"}, timeout=10)
    assert ok.status_code == 200
    assert httpx.post(server.url + PREDICT, json={"a": 1}, timeout=10).status_code == 400


def test_control_characters_in_a_path_cannot_forge_access_log_lines(server: Server) -> None:
    # The model name of a predict path may hold anything but / and : once percent-decoded.
    forged = "/v1/models/m%0a2026-01-01%2000.00.00%201.2.3.4%20%22POST%20x%22%20200%201.0ms%1b[31m:predict"
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head("POST", forged, "localhost", "Content-Type: application/json", body=b"[1]"))
        assert read_answer(sock)[0] == 200
    lines = server.wait_for_stderr(r'"POST /v1/models/m\\n')
    assert len(lines) == 1
    assert "\\n" in lines[0] and "\\x1b" in lines[0]
    assert not re.search(r"^2026-01-01", server.stderr(), re.M)


def test_a_connection_answered_before_its_body_ended_is_still_closed_when_idle(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head("POST", PREDICT, "localhost", "Content-Type: application/json", "Content-Length: 3000"))
        status, _, body = read_answer(sock)  # runtime.max_request_bytes is 2048 in server_echo
        assert b"max_request_bytes" in body
        assert status == 413
        sock.sendall(b" " * 3000)  # the client finishes its body anyway, then says nothing more
        assert closed_within(sock, 2 + 1.5)
