"""kingpost.Client and AsyncClient against real servers: formats, streams, retries and errors."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kingpost
from serving import Server


@pytest.fixture(scope="module")
def client(echo: Server) -> Iterator[kingpost.Client]:
    with kingpost.Client(echo.url) as client:
        yield client


def test_json_round_trip(client: kingpost.Client) -> None:
    answer = client.predict({"x": [1, 2.5, "three"]})
    assert answer["echo"] == {"x": [1, 2.5, "three"]}


def test_numpy_round_trip_over_msgpack(client: kingpost.Client) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    answer = client.predict({"a": array, "n": np.int64(7)}, msgpack=True)
    echoed = answer["echo"]
    assert isinstance(echoed["a"], np.ndarray)
    assert echoed["a"].dtype == np.float32 and echoed["a"].shape == (3, 4)
    np.testing.assert_array_equal(echoed["a"], array)
    assert echoed["n"] == 7
    made = client.predict({"numpy": 3}, msgpack=True)  # arrays the model made come back as arrays too
    assert isinstance(made["array"], np.ndarray) and made["array"].shape == (3, 2)


def test_500_is_a_model_error_with_the_sentence(client: kingpost.Client) -> None:
    with pytest.raises(kingpost.ModelError) as caught:
        client.predict({"raise": "boom"})
    assert caught.value.stage == "predict"
    assert caught.value.status_code == 500
    assert str(caught.value).startswith("the model's predict raised an exception (request ")


def test_400_is_an_input_error_with_the_sentence(client: kingpost.Client) -> None:
    with pytest.raises(kingpost.InputError, match=r"^x must be a number\.$"):
        client.predict({"invalid": "x must be a number."})


def test_api_key_is_sent_as_bearer(echo: Server) -> None:
    seen: list[str] = []
    server = _Recorder(seen)
    with kingpost.Client(server.url, api_key="s3cret", retries=0) as client:
        assert client.predict({"x": 1}) == {"ok": True}
    server.close()
    assert seen == ["Bearer s3cret"]


def test_stream_arrives_chunk_by_chunk(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve("server_stream")
    gate = tmp_path / "gate"
    with kingpost.Client(server.url) as client, \
            client.predict_stream({"chunks": ["one ", "two ", "three"], "gates": [str(gate)]}) as stream:
        assert stream.streamed
        first = next(stream)
        assert first == "one "  # arrived while the model still waits for the gate
        gate.touch()
        assert first + "".join(stream) == "one two three"


def test_stream_as_server_sent_events(serve: Callable[..., Server]) -> None:
    server = serve("server_stream")
    with kingpost.Client(server.url) as client:
        chunks = list(client.predict_stream({"chunks": ["a", "b\nc", "d"]}, sse=True))
        assert chunks == ["a", "b\nc", "d"]
        # predict() on a streaming model gathers the chunks, whichever format the request had
        assert client.predict({"chunks": ["a", "b"]}) == "ab"
        assert client.predict({"chunks": ["a"]}, msgpack=True) == "a"
        with client.predict_stream({"chunks": ["x", "y"]}, msgpack=True) as stream:
            assert stream.streamed and "".join(stream) == "xy"


def test_503_is_retried_after_retry_after(copy_bundle: Callable[..., Path], serve: Callable[..., Server],
                                          tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    bundle = copy_bundle("server_gated_load", model_metadata={"gate": str(gate), "sick": str(tmp_path / "no")})
    server = serve(bundle, wait="live")
    assert server.get("/v1/models/model").headers["retry-after"] == "1"
    with kingpost.Client(server.url, retries=5, backoff=0.01) as client:
        assert not client.ready()
        threading.Timer(0.3, gate.touch).start()
        start = time.monotonic()
        assert client.predict({"x": 1}) == {"x": 1}
        took = time.monotonic() - start
        assert client.ready()
    assert took >= 0.9, f"the retry came {took:.2f} s after the 503; Retry-After said 1 s"


def test_503_retries_run_out_into_not_ready(copy_bundle: Callable[..., Path], serve: Callable[..., Server],
                                            tmp_path: Path) -> None:
    bundle = copy_bundle("server_gated_load", model_metadata={"gate": str(tmp_path / "never"),
                                                              "sick": str(tmp_path / "no")})
    server = serve(bundle, wait="live")
    with kingpost.Client(server.url, retries=1) as client:
        start = time.monotonic()
        with pytest.raises(kingpost.NotReadyError, match="the model is loading") as caught:
            client.predict({"x": 1})
        assert 0.9 <= time.monotonic() - start < 5  # one retry, after Retry-After: 1
        assert caught.value.status_code == 503 and caught.value.retry_after == 1
        with pytest.raises(kingpost.NotReadyError, match=r"was not ready within 0\.3 s"):
            client.wait_ready(0.3)


def test_connection_refused_is_retried_then_raised() -> None:
    port = _free_port()  # nothing listens there
    with kingpost.Client(f"http://127.0.0.1:{port}", retries=3, backoff=0.1) as client:
        start = time.monotonic()
        with pytest.raises(kingpost.UnreachableError, match=f"cannot connect to http://127.0.0.1:{port}/v1/models"):
            client.predict({"x": 1})
        took = time.monotonic() - start
    # Three waits of backoff * 2**n with jitter in [0.5, 1): at least 0.35 s, well under 1 s.
    assert 0.3 <= took < 2.0, took


def test_connection_refused_until_the_server_comes_up(tmp_path: Path) -> None:
    """A client started before its server retries until it answers."""
    port = _free_port()
    box: dict[str, Any] = {}

    def call() -> None:
        with kingpost.Client(f"http://127.0.0.1:{port}", retries=40, backoff=0.05, max_backoff=0.2) as client:
            box["answer"] = client.predict({"x": 1})

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.3)
    server = _Recorder([], port=port)
    thread.join(30)
    server.close()
    assert box == {"answer": {"ok": True}}


def test_a_request_that_may_have_run_is_not_retried() -> None:
    """The connection breaks after the request was sent: not retried unless asked."""
    server = _Recorder([], drop=True)
    with kingpost.Client(server.url, retries=3, backoff=0.01) as client:
        with pytest.raises(kingpost.UnreachableError, match="it may have run, so it was not retried"):
            client.predict({"x": 1})
        assert server.requests == 1
        with pytest.raises(kingpost.UnreachableError):
            client.predict({"x": 1}, retry_unsafe=True)
        assert server.requests == 1 + 4
    server.close()


def test_per_call_timeout(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve("server_stream")
    with kingpost.Client(server.url, retries=3) as client:
        start = time.monotonic()
        with pytest.raises(kingpost.DeadlineExceeded, match="no answer from"):
            # Gathered as one JSON answer: nothing comes back until the gate (never opened) would open.
            client.predict({"chunks": ["a", "b"], "gates": [str(tmp_path / "gate")]}, timeout=0.5,
                           headers={"accept": "application/json"})
        assert time.monotonic() - start < 3  # a timeout may have run: not retried
    (tmp_path / "gate").touch()  # let the model finish, so the server stops at once


def test_async_client(echo: Server, serve: Callable[..., Server]) -> None:
    stream_server = serve("server_stream")

    async def main() -> tuple[Any, Any, list[str], bool]:
        async with kingpost.AsyncClient(echo.url) as client:
            await client.wait_ready(10)
            answer = await client.predict({"a": np.ones(3)}, msgpack=True)
            with pytest.raises(kingpost.ModelError):
                await client.predict({"raise": "boom"})
            ready = await client.ready()
        async with kingpost.AsyncClient(stream_server.url) as streamer:
            chunks = [c async for c in streamer.predict_stream({"chunks": ["x", "y"]})]
        return answer, None, chunks, ready

    answer, _, chunks, ready = asyncio.run(main())
    np.testing.assert_array_equal(answer["echo"]["a"], np.ones(3))
    assert "".join(chunks) == "xy" and ready


def test_kingpost_call_on_the_command_line(echo: Server, serve: Callable[..., Server]) -> None:
    run = [sys.executable, "-m", "kingpost", "call"]
    done = subprocess.run([*run, echo.url, "-d", '{"x": 1}'], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["echo"] == {"x": 1}
    done = subprocess.run([*run, echo.url, "-d", '{"raise": "no"}'], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: the model's predict raised an exception (request ")
    assert done.stderr.count("\n") == 1
    done = subprocess.run([*run, echo.url, "-d", "{x"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("error: -d: the input is not valid JSON")
    server = serve("server_stream")
    done = subprocess.run([*run, server.url + "/v1/models/model:predict", "-d", '{"chunks": ["a", "b"]}'],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ab\n"


# -- helpers --------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _Recorder:
    """A minimal HTTP server on a thread: records the Authorization header, answers {"ok": true},
    or (``drop=True``) reads the request and closes the connection without answering."""

    def __init__(self, seen: list[str], *, port: int = 0, drop: bool = False) -> None:
        self.seen = seen
        self.drop = drop
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    part = conn.recv(65536)
                    if not part:
                        break
                    data += part
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int({k.lower(): v for k, v in headers.items()}.get("content-length", "0"))
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                if self.drop:
                    continue
                self.seen.extend(v for k, v in headers.items() if k.lower() == "authorization")
                out = b'{"ok":true}'
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(out), out))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
