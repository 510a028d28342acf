"""docker_server bundles: kingpost starts the bundle's own server and stands in front of it."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def custom(copy_bundle: Callable[..., Path], serve: Callable[..., Any]) -> tuple[Any, Path, int]:
    port = free_port()
    bundle = copy_bundle("docker_server", docker_server={
        "start_command": f"exec {sys.executable} server.py --port {port}", "server_port": port})
    return serve(bundle), bundle, port


def test_predict_and_a_streamed_chat_completion_pass_through(custom: tuple[Any, Path, int]) -> None:
    server, bundle, _ = custom
    answer = httpx.post(server.url + "/v1/models/model:predict", json={"x": [1, 2]}, headers={"X-Test": "yes"})
    assert answer.status_code == 200
    assert answer.json()["echo"] == {"x": [1, 2]} and answer.json()["via"] == "yes"

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="custom", messages=[{"role": "user", "content": "one two three"}],
                                            stream=True)
    words = iter(stream)
    first = next(words)  # arrives while the child still holds back the rest
    assert first.choices[0].delta.content == "ONE"
    assert not (bundle / "release").exists()
    (bundle / "release").write_text("")
    assert [c.choices[0].delta.content for c in words] == ["TWO", "THREE"]

    too_big = httpx.post(server.url + "/v1/models/model:predict", content=b"x" * 5000)
    assert too_big.status_code == 413
    assert "runtime.max_request_bytes" in too_big.json()["error"]
    metrics = server.get("/metrics").text
    assert 'kingpost_requests_total{route="predict",status="200"} 1' in metrics
    assert 'kingpost_requests_total{route="predict",status="413"} 1' in metrics
    assert 'kingpost_requests_total{route="proxy",status="200"} 1' in metrics
    server.wait_for_stderr(r'"POST /v1/chat/completions" 200')


def test_a_killed_child_fails_readiness_with_the_reason_and_sigterm_stops_it(custom: tuple[Any, Path, int]) -> None:
    server, _, _ = custom
    pid = httpx.post(server.url + "/v1/models/model:predict", json=1).json()["pid"]
    assert server.get("/v1/models/model").json() == {"healthy": True}  # the child's own answer
    os.kill(pid, signal.SIGKILL)
    reason = "the custom server (docker_server.start_command) was killed by SIGKILL."
    answer = server.wait_status("/v1/models/model", 503)
    assert answer.json() == {"error": reason}
    assert server.get("/").status_code == 503
    failed = httpx.post(server.url + "/v1/models/model:predict", json=1)
    assert failed.status_code == 503 and failed.json() == {"error": reason}
    server.wait_for_stderr("was killed by SIGKILL; readiness now fails")
    assert server.stop() == 0


def test_sigterm_stops_the_child_with_the_server(custom: tuple[Any, Path, int]) -> None:
    server, _, _ = custom
    pid = httpx.post(server.url + "/v1/models/model:predict", json=1).json()["pid"]
    assert server.stop() == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the child outlived the server")


def test_weights_are_fetched_before_the_child_starts(copy_bundle: Callable[..., Path], serve: Callable[..., Any],
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fileserver import FileServer, chunks

    monkeypatch.setenv("KINGPOST_CACHE_DIR", str(tmp_path / "cache"))
    data = chunks(200_000, seed=7)
    port = free_port()
    mount = tmp_path / "models" / "w.bin"
    with FileServer({"/w.bin": data}) as files:
        files.hold_after["/w.bin"] = 50_000
        bundle = copy_bundle("docker_server", weights=[{"source": files.url + "/w.bin", "mount_location": str(mount)}],
                             docker_server={"start_command": f"exec {sys.executable} server.py --port {port}",
                                            "server_port": port})
        server = serve(bundle, wait="bound")
        assert files.served.wait(30)
        fetching = server.wait_status("/v1/models/model", 503)
        assert fetching.json() == {"error": "the custom server is fetching weights."}
        files.release.set()
        del files.hold_after["/w.bin"]
        server.wait_status("/v1/models/model", 200)
    answer = httpx.get(f"{server.url}/sha256{mount}").json()  # the child reads the file where the config put it
    import hashlib

    assert answer == {"sha256": hashlib.sha256(data).hexdigest()}


def test_request_timeout_applies_to_the_child(copy_bundle: Callable[..., Path], serve: Callable[..., Any]) -> None:
    port = free_port()
    bundle = copy_bundle("docker_server", runtime={"request_timeout_s": 0.5}, docker_server={
        "start_command": f"exec {sys.executable} server.py --port {port}", "server_port": port})
    server = serve(bundle)
    slow = httpx.post(server.url + "/slow", json=3)
    assert slow.status_code == 504
    assert slow.json() == {"error": "the custom server did not answer within runtime.request_timeout_s (0.5 s)."}
    assert httpx.post(server.url + "/slow", json=0).json() == {"slept": 0}  # the next request is fine


def test_check_describes_it_and_predict_or_serving_beside_others_is_one_sentence(
        copy_bundle: Callable[..., Path]) -> None:
    import subprocess

    from conftest import bundle_path

    bundle = copy_bundle("docker_server")

    def kingpost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kingpost", *args], capture_output=True, text=True, timeout=60,
                              env=os.environ.copy())

    check = kingpost("check", str(bundle))
    assert check.returncode == 0, check.stderr
    assert ("server        python3 server.py --port 8000  (port 8000; predict: /predict, readiness: /health, "
            "liveness: /health)") in check.stdout
    predict = kingpost("predict", str(bundle), "-d", "1")
    assert predict.returncode == 1
    assert predict.stderr == (f"error: {bundle / 'config.yaml'}: docker_server: this bundle brings its own server "
                              "instead of a model.py, so it runs only as a server: kingpost serve.\n")
    together = kingpost("serve", str(bundle), str(bundle_path("echo")), "--port", "0")
    assert together.returncode == 1
    assert together.stderr == (f"error: {bundle / 'config.yaml'}: docker_server: a bundle with its own server is "
                               "served alone, not beside other models; serve it by itself.\n")
    keyed = kingpost("serve", str(bundle), "--port", "0", "--api-key", "k-123")
    assert keyed.returncode == 1
    assert "docker_server: API keys and CORS are not applied in front of a custom server yet" in keyed.stderr
    assert keyed.stderr.count("\n") == 1 and "k-123" not in keyed.stderr
