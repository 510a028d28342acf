"""Every front door that carries a streaming predict's output, beyond tests/test_stream_delivery.py's
(in process, HTTP :predict chunked and SSE): its chunks reach the client one by one as they are
yielded, and a client that stops reading keeps the predict slot (a second request does not enter
predict until the first stream is read), its generator held back by the stream's room
(``runtime.limits.stream_buffer_bytes``) and the sockets' buffers rather than run to its end.

Doors: Truss's OpenAI-style ``/v1/chat/completions`` (the official ``openai`` client) and a
``:predict`` through Truss's model surface, sync and async, over HTTP and in process; SageMaker's
``/invocations``; several bundles behind one server (``/v1/models/<name>:predict``);
``kingpost.Client`` / ``AsyncClient.predict_stream`` and the ``kingpost call`` / ``kingpost predict``
CLIs; every production layer on (API keys, CORS, JSON logs, traces); a durable async job's stream;
a predict that returns a generator (on the event loop's inline path) or a Starlette
StreamingResponse; ``kingpost serve --isolated`` (slow: it builds an environment); a docker_server
bundle behind kingpost's proxy (no slot there: its server is held back instead); Ray Serve behind
HAProxy and behind Serve's proxy (slow; a slow reader does not hold the slot there: a strict xfail,
see the README). V2 infer is no door for a stream: it refuses one.

The bundles (tests/bundles/stream_doors*) wait for a gate file before chunk i >= 1, which the test
creates only once chunk i - 1 has arrived alone: a door that coalesced or buffered chunks would
leave the generator waiting and fail the read's timeout instead. With {"count", "size", "log"} they
write how far they got, so a test sees how far predict ran ahead of a client that does not read;
with "mark" they create a file as the generator starts, inside predict's slot.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import kingpost
from conftest import bundle_path
from serving import Server, serving

pytestmark = pytest.mark.timeout(60)

CHUNKS = ["alpha ", "beta ", "gamma ", "delta"]
COUNT, SIZE = 512, 64 * 1024  # 32 MiB: far more than a socket, the stream's room (1 MiB) and httpx hold
MESSAGES = [{"role": "user", "content": "hi"}]
SURFACE = {"sync": "stream_doors", "async": "stream_doors_async"}


def _paced(tmp_path: Path) -> tuple[dict[str, Any], list[Path]]:
    gates = [tmp_path / f"gate{i}" for i in range(1, len(CHUNKS))]
    return {"chunks": CHUNKS, "gates": [str(g) for g in gates]}, gates


def _each_alone(chunks: Iterator[Any], gates: list[Path], expected: list[Any] | None = None) -> None:
    """Take the chunks one by one: each must be exactly the next one yielded (the generator is held
    at the next gate meanwhile); open that gate only then."""
    for i, want in enumerate(expected or CHUNKS):
        assert next(chunks) == want, f"chunk {i}"
        if i < len(gates):
            gates[i].touch()
    assert next(chunks, None) is None


def _progress(log: Path) -> str:
    return log.read_text() if log.exists() else ""


def _settled(log: Path) -> str:
    """The log once the producer has stopped (the same for 0.5 s) or ended; at most 10 s of polling."""
    last, same = "", 0
    for _ in range(100):
        time.sleep(0.1)
        now = _progress(log)
        same = same + 1 if now == last and now else 0
        if same >= 5 or now.startswith("done"):
            return now
        last = now
    return _progress(log)


class Slow:
    """A first request whose client read its first chunk (at most) and then stops reading."""

    def __init__(self, drain: Callable[[], int], close: Callable[[], None] = lambda: None) -> None:
        self.drain = drain  # reads the rest; returns the characters (or bytes) of the whole stream
        self.close = close


def _holds_the_slot(tmp_path: Path, start: Callable[[dict[str, Any]], Slow],
                    second: Callable[[dict[str, Any]], Any], expected_total: int) -> None:
    """``start`` a stream of COUNT chunks of SIZE and read none of it; then predict ran a bounded way
    ahead and stopped, and ``second`` (another request on the same model) does not enter predict
    until the first stream has been read to its end."""
    log, mark = tmp_path / "log", tmp_path / "second-entered"
    slow = start({"count": COUNT, "size": SIZE, "log": str(log)})
    try:
        ahead = _settled(log)  # reads nothing meanwhile
        assert ahead and not ahead.startswith("done"), f"the generator ran to its end: {ahead!r}"
        assert int(ahead) < COUNT // 2, f"the generator ran {ahead} chunks ahead of a client that reads nothing"

        answer: dict[str, Any] = {}

        def other() -> None:
            try:
                answer["value"] = second({"chunks": ["y"], "mark": str(mark)})
            except BaseException as exc:  # shown by the assertion below
                answer["error"] = exc
            answer["at"] = time.monotonic()

        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        time.sleep(1.0)
        assert not mark.exists(), "a second request entered predict while the first stream held the only slot"
        assert not answer, answer
        assert int(_progress(log)) == int(ahead), "the generator went on while its client read nothing"
        received = slow.drain()
        drained_at = time.monotonic()
    finally:
        slow.close()
    thread.join(30)
    assert "error" not in answer, answer.get("error")
    assert received == expected_total
    assert _progress(log) == f"done {COUNT}"
    assert mark.exists() and answer["at"] >= drained_at - 0.5
    return_value = answer["value"]
    assert return_value in ("y", b"y", ["y"]), return_value


# -- raw HTTP: a client that reads nothing --------------------------------------------------------


def _raw_post(server: Server | httpx.URL, path: str, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> Slow:
    """POST ``body`` to ``server`` (a Server, or a URL's host and port) on a socket with a small
    receive buffer, and read nothing (yet)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect((server.host, server.port))
    data = json.dumps(body).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nContent-Type: application/json\r\n"
                 f"{extra}Content-Length: {len(data)}\r\n\r\n".encode() + data)

    def drain() -> int:
        received = bytearray()
        sock.settimeout(10)
        for _ in range(100_000):
            part = sock.recv(1 << 20)
            assert part, "the server closed the stream early"
            received += part
            if received.endswith(b"0\r\n\r\n") and len(received) > SIZE * COUNT:
                break
        head, _, rest = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        return _unchunk(rest).count(b"x")

    return Slow(drain, sock.close)


def _unchunk(body: bytes) -> bytes:
    out, at = bytearray(), 0
    for _ in range(1_000_000):
        size_end = body.index(b"\r\n", at)
        size = int(body[at:size_end], 16)
        if size == 0:
            return bytes(out)
        out += body[size_end + 2:size_end + 2 + size]
        at = size_end + 2 + size + 2
    raise AssertionError("the chunked body never ended")


def _predict(server: Server, path: str, headers: dict[str, str] | None = None) -> Callable[[dict[str, Any]], Any]:
    def call(body: dict[str, Any]) -> Any:
        reply = httpx.post(server.url + path, json=body, headers=headers, timeout=30)
        assert reply.status_code == 200, reply.text
        return reply.text
    return call


# -- Truss's surface: OpenAI-style chat completions and :predict through it -----------------------


@pytest.fixture(scope="module", params=["sync", "async"])
def surface_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serving(bundle_path(SURFACE[request.param])) as server:
        yield server


def _openai(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=10)


def test_chat_completion_chunks_arrive_as_yielded(surface_server: Server, tmp_path: Path) -> None:
    payload, gates = _paced(tmp_path)
    with _openai(surface_server) as client:
        stream = client.chat.completions.create(model="doors", messages=MESSAGES, stream=True,
                                                extra_body=payload)
        with stream:
            contents = (chunk.choices[0].delta.content for chunk in stream)
            _each_alone(contents, gates)


def test_a_chat_completion_read_slowly_holds_the_predict_slot(surface_server: Server, tmp_path: Path) -> None:
    client = _openai(surface_server)

    def start(body: dict[str, Any]) -> Slow:
        stream = client.chat.completions.create(model="doors", messages=MESSAGES, stream=True,
                                                extra_body=body)
        contents = (chunk.choices[0].delta.content for chunk in stream)
        first = len(next(contents))
        return Slow(lambda: first + sum(len(c) for c in contents), stream.close)

    def second(body: dict[str, Any]) -> Any:
        with _openai(surface_server) as other:
            return [c.choices[0].delta.content for c in other.chat.completions.create(
                model="doors", messages=MESSAGES, stream=True, extra_body=body)]

    try:
        _holds_the_slot(tmp_path, start, second, COUNT * SIZE)
    finally:
        client.close()


def test_surface_predict_chunks_arrive_as_yielded(surface_server: Server, tmp_path: Path) -> None:
    payload, gates = _paced(tmp_path)
    with httpx.Client(base_url=surface_server.url, timeout=10) as client, \
            client.stream("POST", "/v1/models/model:predict", json=payload) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        _each_alone(response.iter_raw(), gates, [c.encode() for c in CHUNKS])


def test_a_surface_predict_read_slowly_holds_the_predict_slot(surface_server: Server, tmp_path: Path) -> None:
    """The second request is a chat completion: one slot serves predict and the OpenAI-style methods."""
    def second(body: dict[str, Any]) -> Any:
        reply = httpx.post(surface_server.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=30)
        assert reply.status_code == 200, reply.text
        return [json.loads(line[6:])["choices"][0]["delta"]["content"]
                for line in reply.text.split("\n\n") if line.startswith("data: {")]

    _holds_the_slot(tmp_path, lambda body: _raw_post(surface_server, "/v1/models/model:predict", body), second,
                    COUNT * SIZE)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_in_process_a_surface_stream_is_held_to_the_stream_room(kind: str, tmp_path: Path) -> None:
    """kingpost.load of a bundle behind Truss's surface: a caller that stops reading holds predict
    within runtime.limits.stream_buffer_bytes (1 MiB: 16 chunks of 64 KiB), not at its end."""
    log = tmp_path / "log"
    bundle = kingpost.load(bundle_path(SURFACE[kind]))
    try:
        chunks = iter(bundle.predict({"count": 200, "size": SIZE, "log": str(log)}))
        assert next(chunks) == "x" * SIZE
        ahead = _settled(log)  # reads nothing meanwhile
        # the room (16 chunks of 64 KiB), the one taken, one in hand
        assert ahead and not ahead.startswith("done") and 14 <= int(ahead) <= 20, ahead
        assert len(list(chunks)) == 199
        assert _progress(log) == "done 200"
    finally:
        bundle.close()


# -- a plain bundle: /invocations, several bundles, kingpost.Client, kingpost call, jobs -------------


@pytest.fixture(scope="module")
def plain_server() -> Iterator[Server]:
    with serving(bundle_path("stream_doors_plain")) as server:
        yield server


def test_invocations_chunks_arrive_as_yielded(plain_server: Server, tmp_path: Path) -> None:
    payload, gates = _paced(tmp_path)
    with httpx.Client(base_url=plain_server.url, timeout=10) as client, \
            client.stream("POST", "/invocations", json=payload) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        _each_alone(response.iter_raw(), gates, [c.encode() for c in CHUNKS])


def test_invocations_read_slowly_holds_the_predict_slot(plain_server: Server, tmp_path: Path) -> None:
    _holds_the_slot(tmp_path, lambda body: _raw_post(plain_server, "/invocations", body),
                    _predict(plain_server, "/v1/models/model:predict"), COUNT * SIZE)


@pytest.mark.parametrize("sse", [False, True], ids=["chunked", "sse"])
def test_client_predict_stream_yields_chunks_as_they_arrive(plain_server: Server, tmp_path: Path, sse: bool) -> None:
    payload, gates = _paced(tmp_path)
    with kingpost.Client(plain_server.url, timeout=10) as client, \
            client.predict_stream(payload, sse=sse) as stream:
        assert stream.streamed
        _each_alone(stream, gates)


@pytest.mark.parametrize("sse", [False, True], ids=["chunked", "sse"])
def test_async_client_predict_stream_yields_chunks_as_they_arrive(plain_server: Server, tmp_path: Path,
                                                                  sse: bool) -> None:
    payload, gates = _paced(tmp_path)

    async def read() -> None:
        async with kingpost.AsyncClient(plain_server.url, timeout=10) as client:
            chunks = client.predict_stream(payload, sse=sse)
            try:
                for i, want in enumerate(CHUNKS):
                    assert await asyncio.wait_for(anext(chunks), 10) == want, f"chunk {i}"
                    if i < len(gates):
                        gates[i].touch()
                assert await asyncio.wait_for(anext(chunks, None), 10) is None
            finally:
                await chunks.aclose()

    asyncio.run(read())


def test_a_client_stream_read_slowly_holds_the_predict_slot(plain_server: Server, tmp_path: Path) -> None:
    client = kingpost.Client(plain_server.url, timeout=30)

    def start(body: dict[str, Any]) -> Slow:
        stream = client.predict_stream(body)
        first = len(next(stream))
        return Slow(lambda: first + sum(len(c) for c in stream), stream.close)

    def second(body: dict[str, Any]) -> Any:
        with kingpost.Client(plain_server.url, timeout=30) as other:
            return "".join(other.predict_stream(body))

    try:
        _holds_the_slot(tmp_path, start, second, COUNT * SIZE)
    finally:
        client.close()


def _read_within(fd: int, want: bytes, timeout: float) -> bytes:
    """Read ``fd`` until it has given exactly ``want`` (more is a failure), within ``timeout``."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < len(want):
        left = deadline - time.monotonic()
        assert left > 0, f"only {got!r} of {want!r} within {timeout:g} s"
        if select.select([fd], [], [], left)[0]:
            part = os.read(fd, 65536)
            assert part, f"the output ended after {got!r}"
            got += part
    assert got == want
    return got


def _cli_prints_each_chunk(command: list[str], gates: list[Path]) -> None:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        for i, chunk in enumerate(CHUNKS):
            last = i == len(CHUNKS) - 1  # the closing newline follows the last chunk at once
            _read_within(fd, chunk.encode() + (b"\n" if last else b""), 20)  # alone: the model waits at the next gate
            if i < len(gates):
                gates[i].touch()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_kingpost_call_prints_chunks_as_they_arrive(plain_server: Server, tmp_path: Path) -> None:
    payload, gates = _paced(tmp_path)
    _cli_prints_each_chunk([sys.executable, "-m", "kingpost", "call", plain_server.url, "-d", json.dumps(payload)],
                           gates)


LAYERED = {"authorization": "Bearer doors-key", "origin": "http://browser.example"}


@pytest.fixture(scope="module")
def layered_server() -> Iterator[Server]:
    """Every production layer on: API keys (predict's keyed shortcut), CORS, JSON request logs and
    OpenTelemetry traces (to the console: stdout, which the test discards)."""
    with serving(bundle_path("stream_doors_plain"), "--api-key", "doors-key", "--cors-origin", "*",
                 "--log-format", "json", env={"OTEL_TRACES_EXPORTER": "console"}) as server:
        yield server


def test_every_layer_on_streams_chunks_as_yielded(layered_server: Server, tmp_path: Path) -> None:
    payload, gates = _paced(tmp_path)
    for _ in range(2):  # the first request routes the path, the second takes the keyed shortcut
        assert httpx.post(layered_server.url + "/v1/models/model:predict", json={"chunks": ["w"]},
                          headers=LAYERED, timeout=10).text == "w"
    with httpx.Client(base_url=layered_server.url, timeout=10) as client, \
            client.stream("POST", "/v1/models/model:predict", json=payload, headers=LAYERED) as response:
        assert response.headers["access-control-allow-origin"] == "*" and response.headers["x-request-id"]
        _each_alone(response.iter_raw(), gates, [c.encode() for c in CHUNKS])


def test_every_layer_on_a_slow_reader_holds_the_predict_slot(layered_server: Server, tmp_path: Path) -> None:
    path = "/v1/models/model:predict"
    _holds_the_slot(tmp_path, lambda body: _raw_post(layered_server, path, body, LAYERED),
                    _predict(layered_server, path, LAYERED), COUNT * SIZE)


def test_v2_infer_refuses_a_stream(plain_server: Server) -> None:
    """The Open Inference Protocol answers whole tensors, so it is no door for a stream: a 400 whose
    sentence names :predict, and the same model's :predict still streams."""
    body = {"inputs": [{"name": "chunks", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
                       {"name": "unused", "shape": [1], "datatype": "INT64", "data": [0]}]}
    reply = httpx.post(plain_server.url + "/v2/models/model/infer", json=body, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"] == ("the model streams its output, and a V2 infer answers with whole tensors: "
                                     "call its :predict route instead.")
    assert httpx.post(plain_server.url + "/v1/models/model:predict", json={"chunks": ["z"]}, timeout=10).text == "z"


def test_several_bundles_stream_by_name_and_hold_each_ones_slot(tmp_path: Path) -> None:
    with serving(bundle_path("stream_doors_plain"), str(bundle_path("stream_doors_async")), wait="live") as server:
        server.wait_status("/v2/health/ready", 200, timeout=30)  # every model loaded (no /v1/models/model here)
        for name in ("stream-doors-plain", "stream-doors-async"):
            payload, gates = _paced(tmp_path / name)
            (tmp_path / name).mkdir()
            with httpx.Client(base_url=server.url, timeout=10) as client, \
                    client.stream("POST", f"/v1/models/{name}:predict", json=payload) as response:
                assert response.headers["transfer-encoding"] == "chunked"
                _each_alone(response.iter_raw(), gates, [c.encode() for c in CHUNKS])
        path = "/v1/models/stream-doors-plain:predict"
        _holds_the_slot(tmp_path, lambda body: _raw_post(server, path, body), _predict(server, path), COUNT * SIZE)


def test_a_streaming_job_stores_chunks_as_yielded_and_holds_the_slot(tmp_path: Path) -> None:
    """The job's reader is the server itself: each chunk is stored as it comes, and predict's slot
    stays taken until the job's generator ends, so a :predict meanwhile waits for it."""
    payload, gates = _paced(tmp_path)
    mark = tmp_path / "second-entered"
    env = {"KINGPOST_JOBS_POLL_S": "0.1"}
    with serving(bundle_path("stream_doors_plain"), "--jobs-dir", str(tmp_path / "jobs"), env=env) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        job_id = http.post("/v1/models/model:async_predict", json={"model_input": payload}).json()["request_id"]

        def chunks() -> list[str]:
            return list(http.get(f"/v1/jobs/{job_id}").json().get("chunks") or [])

        answer: dict[str, Any] = {}
        thread: threading.Thread | None = None
        for i in range(len(CHUNKS)):
            server.wait_until(lambda n=i + 1: len(chunks()) >= n, f"chunk {i} to be stored", 10)
            assert chunks() == CHUNKS[:i + 1]  # this one alone: the model waits at the next gate
            if i == 0:
                thread = threading.Thread(target=lambda: answer.update(
                    reply=http.post("/v1/models/model:predict", json={"chunks": ["y"], "mark": str(mark)}),
                    at=time.monotonic()), daemon=True)
                thread.start()
                time.sleep(0.5)
            if i < len(gates):  # the generator waits at gate i, inside the slot
                assert not mark.exists(), f"a :predict entered predict while a job's stream held the only slot ({i})"
                assert not answer
                released_at = time.monotonic()
                gates[i].touch()
        assert thread is not None
        thread.join(30)
        assert answer["reply"].text == "y" and mark.exists() and answer["at"] >= released_at
        job = http.get(f"/v1/jobs/{job_id}?wait=10").json()
        assert (job["status"], job["output"]) == ("succeeded", "".join(CHUNKS))


# -- a predict that returns its stream: a generator, or a Starlette StreamingResponse -----------------


@pytest.fixture(scope="module")
def returning_server() -> Iterator[Server]:
    with serving(bundle_path("stream_doors_returned")) as server:
        yield server


def _on_the_loop(server: Server) -> None:
    """Quick calls until kingpost calls this fast predict on the event loop (its inline path): a
    generator it returns there is then driven by a predict thread that takes a slot of its own."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(200):
            where = client.post("/v1/models/model:predict", json={"where": True}).json()
            if not where.startswith("kingpost-predict"):
                return
    raise AssertionError(f"predict never ran on the event loop (last on {where})")


def test_a_returned_generator_streams_as_yielded(returning_server: Server, tmp_path: Path) -> None:
    _on_the_loop(returning_server)
    payload, gates = _paced(tmp_path)
    with httpx.Client(base_url=returning_server.url, timeout=10) as client, \
            client.stream("POST", "/v1/models/model:predict", json=payload) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        _each_alone(response.iter_raw(), gates, [c.encode() for c in CHUNKS])


def test_a_returned_generator_read_slowly_holds_the_predict_slot(returning_server: Server, tmp_path: Path) -> None:
    _on_the_loop(returning_server)
    path = "/v1/models/model:predict"
    _holds_the_slot(tmp_path, lambda body: _raw_post(returning_server, path, body),
                    _predict(returning_server, path), COUNT * SIZE)


@pytest.fixture(scope="module")
def response_server() -> Iterator[Server]:
    with serving(bundle_path("stream_doors_returned")) as server:
        yield server


def test_a_returned_streaming_response_streams_as_yielded(response_server: Server, tmp_path: Path) -> None:
    payload, gates = _paced(tmp_path)
    with httpx.Client(base_url=response_server.url, timeout=10) as client, \
            client.stream("POST", "/v1/models/model:predict", json={**payload, "response": True}) as response:
        assert response.headers["content-type"].startswith("text/plain")
        _each_alone(response.iter_raw(), gates, [c.encode() for c in CHUNKS])


def test_a_returned_streaming_response_read_slowly_holds_the_predict_slot(response_server: Server,
                                                                          tmp_path: Path) -> None:
    """Its body is the model's own (no stream room): uvicorn's flow control holds the generator back."""
    path = "/v1/models/model:predict"
    send = _predict(response_server, path)
    _holds_the_slot(tmp_path, lambda body: _raw_post(response_server, path, {**body, "response": True}),
                    lambda body: send({**body, "response": True}), COUNT * SIZE)


def test_kingpost_predict_prints_chunks_as_they_are_yielded(tmp_path: Path) -> None:
    """The CLI's in-process door: ``kingpost predict DIR`` writes each chunk as the model yields it."""
    payload, gates = _paced(tmp_path)
    command = [sys.executable, "-m", "kingpost", "predict", str(bundle_path("stream_doors_plain")),
               "-d", json.dumps(payload)]
    _cli_prints_each_chunk(command, gates)


@pytest.mark.slow
@pytest.mark.timeout(300)  # a cold build installs kingpost's dependencies
def test_serve_isolated_streams_as_yielded_and_holds_the_slot(tmp_path: Path) -> None:
    """``kingpost serve --isolated``: the server runs in the bundle's own environment (built here, in
    a cache of this test's own), in a process of its own."""
    cache = tmp_path / "cache"
    with serving(bundle_path("stream_doors_plain"), "--isolated", env={"KINGPOST_CACHE_DIR": str(cache)},
                 timeout=300) as server:
        assert "building environment" in server.stderr()
        payload, gates = _paced(tmp_path)
        with httpx.Client(base_url=server.url, timeout=10) as client, \
                client.stream("POST", "/v1/models/model:predict", json=payload) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            _each_alone(response.iter_raw(), gates, [c.encode() for c in CHUNKS])
        path = "/v1/models/model:predict"
        _holds_the_slot(tmp_path, lambda body: _raw_post(server, path, body), _predict(server, path), COUNT * SIZE)


# -- docker_server: kingpost's proxy in front of the bundle's own server ------------------------------


def test_docker_server_streams_as_written_and_a_slow_reader_holds_the_server_back(
        copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    """kingpost holds no predict slot for a custom server (the server has its own concurrency), so
    the slow reader's check here is the backpressure: the proxy reads the server's stream only as
    fast as its client reads it, so the server's writes wait instead of piling up in kingpost."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bundle = copy_bundle("stream_doors_custom", docker_server={
        "start_command": f"exec {sys.executable} server.py --port {port}", "server_port": port})
    with serving(bundle) as server:
        payload, gates = _paced(tmp_path)
        with httpx.Client(base_url=server.url, timeout=10) as client, \
                client.stream("POST", "/v1/models/model:predict", json=payload) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            _each_alone(response.iter_raw(), gates, [c.encode() for c in CHUNKS])

        log = tmp_path / "log"
        slow = _raw_post(server, "/v1/models/model:predict", {"count": COUNT, "size": SIZE, "log": str(log)})
        try:
            ahead = _settled(log)  # reads nothing meanwhile
            assert ahead and not ahead.startswith("done"), f"the server wrote its whole stream: {ahead!r}"
            assert int(ahead) < COUNT // 2, f"the server got {ahead} chunks ahead of a client that reads nothing"
            assert slow.drain() == COUNT * SIZE
        finally:
            slow.close()
        assert _progress(log) == f"done {COUNT}"


# -- Ray Serve: behind each ingress --------------------------------------------------------------------


@pytest.fixture(scope="module", params=["haproxy", "proxy"])
def through_ray(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Deploy stream_doors_plain on Ray Serve (one replica) behind each ingress ``kingpost ray``
    offers (HAProxy to the replica's own HTTP server, or Serve's Python proxy) and run both checks
    through it, in a driver inside a private network namespace, as tests/test_ray.py does; returns
    what it saw."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip('needs Ray Serve: pip install "kingpost[ray]"')
    from test_ray import _can_unshare, _kill_leftovers

    if not _can_unshare():
        pytest.skip("needs unshare -rn (a private network namespace) and ip")
    ingress = request.param
    if ingress == "haproxy":
        from kingpost.deploy._ray_ingress import has_haproxy

        if not has_haproxy():
            pytest.skip("needs an HAProxy binary (ray[serve] brings one on Linux)")
    tmp = tmp_path_factory.mktemp(f"ray-doors-{ingress}")
    out = tmp / "result.json"
    command = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
               sys.executable, str(Path(__file__).resolve()), "--ray-driver", str(tmp), ingress]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
    try:
        with (tmp / "driver.log").open("wb") as sink:
            code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=200).returncode
    finally:
        _kill_leftovers(tmp / "pids.json")
    tail = (tmp / "driver.log").read_text(errors="replace")[-4000:]
    assert code == 0 and out.exists(), f"driver exited {code}:\n{tail}"
    seen: dict[str, Any] = json.loads(out.read_text())
    assert "error" not in seen, seen["error"] + "\n" + tail
    assert seen["ingress"] == ingress
    return seen


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ray_serve_streams_chunks_as_yielded(through_ray: dict[str, Any]) -> None:
    assert through_ray["paced"] == CHUNKS  # each read alone, before the next gate opened


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.xfail(strict=True, reason="Ray Serve hands the app an ASGI send that appends to an unbounded "
                                       "queue and never waits, behind either ingress, so a stream runs to its end "
                                       "however slowly its client reads")
def test_ray_serve_a_slow_reader_holds_the_predict_slot(through_ray: dict[str, Any]) -> None:
    slot = through_ray["slot"]
    assert not slot["ahead"].startswith("done"), f"the generator ran to its end: {slot['ahead']!r}"
    assert not slot["second_entered_while_unread"]
    assert slot["received"] == COUNT * SIZE


def _ray_driver(tmp: Path, ingress: str) -> None:
    """Inside the namespace: deploy, run the paced stream and the slow reader, write result.json."""
    import traceback

    from kingpost.deploy import ray as kingpost_ray
    from test_ray import _descendants

    seen: dict[str, Any] = {}
    deployment = kingpost_ray.deploy(bundle_path("stream_doors_plain"), port=8000, num_replicas=1,
                                     init_options={"num_cpus": 2}, ingress=ingress)
    seen["ingress"] = deployment.ingress
    (tmp / "pids.json").write_text(json.dumps(sorted(_descendants().items())))
    url = deployment.url
    try:
        payload, gates = _paced(tmp)
        paced: list[Any] = []
        with httpx.Client(timeout=10) as client, \
                client.stream("POST", url + "/v1/models/model:predict", json=payload) as response:
            parts = response.iter_raw()
            for i in range(len(CHUNKS)):
                paced.append(next(parts).decode())  # a read timeout here: chunks held back
                if i < len(gates):
                    gates[i].touch()
            assert next(parts, None) is None
        seen["paced"] = paced

        log, mark = tmp / "log", tmp / "second-entered"
        slow = _raw_post(httpx.URL(url), "/v1/models/model:predict", {"count": COUNT, "size": SIZE, "log": str(log)})
        try:
            slot: dict[str, Any] = {"ahead": _settled(log)}  # reads nothing meanwhile
            answer: dict[str, Any] = {}
            thread = threading.Thread(target=lambda: answer.update(reply=httpx.post(
                url + "/v1/models/model:predict", json={"chunks": ["y"], "mark": str(mark)}, timeout=60).text),
                daemon=True)
            thread.start()
            time.sleep(2.0)
            slot["second_entered_while_unread"] = mark.exists()
            slot["received"] = slow.drain()
        finally:
            slow.close()
        thread.join(60)
        slot["second"] = answer.get("reply")
        seen["slot"] = slot
    except BaseException:  # reported to the test
        seen["error"] = traceback.format_exc()
    finally:
        deployment.close()
    (tmp / "result.json").write_text(json.dumps(seen))


if __name__ == "__main__" and sys.argv[1:2] == ["--ray-driver"]:
    _ray_driver(Path(sys.argv[2]), sys.argv[3])
