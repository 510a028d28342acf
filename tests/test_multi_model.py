"""Several bundles in one server: routing by name, a runtime each, load and unload while serving."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import bundle_path
from serving import Server

SLEEP_S = 1.5  # the sleepy model's predict time; three of them queue 4.5 s behind its lock


def wait_ready(server: Server) -> None:
    server.wait_status("/v2/health/ready", 200, timeout=60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_two_bundles_under_concurrent_load_answer_each_request_from_its_own_model(
        serve: Callable[..., Server]) -> None:
    server = serve(bundle_path("echo"), str(bundle_path("v2_sleep")), wait="live")
    wait_ready(server)
    assert "2 models (echo, sleepy)" in server.stderr()
    echo_latencies: list[float] = []
    sleepy_done: list[float] = []
    errors: list[str] = []
    start = time.monotonic()

    def sleepy(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.post("/v1/models/sleepy:predict", json={"sleep_s": SLEEP_S, "n": n})
            if answer.json() != {"model": "sleepy", "n": n}:
                errors.append(f"sleepy {n}: {answer.text}")
            sleepy_done.append(time.monotonic() - start)

    def echo(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for i in range(15):
                payload = {"worker": worker, "i": i}
                t0 = time.monotonic()
                if i % 2:
                    answer = client.post("/v1/models/echo:predict", json=payload).json()
                    ok = answer == payload
                else:
                    answer = client.post("/v2/models/echo/infer", json={"id": f"{worker}-{i}", "inputs": [
                        {"name": "x", "shape": [2], "datatype": "INT64", "data": [worker, i]}]}).json()
                    ok = answer["id"] == f"{worker}-{i}" and answer["outputs"][0]["data"] == [worker, i]
                echo_latencies.append(time.monotonic() - t0)
                if not ok:
                    errors.append(f"echo {payload}: {answer}")
                time.sleep(0.05)

    threads = [threading.Thread(target=sleepy, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=echo, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert len(echo_latencies) == 60 and len(sleepy_done) == 3
    # The sleepy model's lock held its three requests one after another...
    assert max(sleepy_done) >= 3 * SLEEP_S * 0.95
    # ...while echo, behind its own lock, never waited for one of them (generous: a loaded 2-core machine).
    slowest = max(echo_latencies)
    median = sorted(echo_latencies)[len(echo_latencies) // 2]
    print(f"echo median {median * 1000:.0f} ms, slowest {slowest * 1000:.0f} ms "
          f"while sleepy's queue held {3 * SLEEP_S:g} s of predicts")
    assert slowest < SLEEP_S, f"echo took {slowest:.3f} s: it waited on the other model's predict"


def test_names_route_and_unknown_names_are_404(serve: Callable[..., Server]) -> None:
    server = serve(bundle_path("echo"), str(bundle_path("twin_a")), wait="live")
    wait_ready(server)
    assert httpx.post(server.url + "/v1/models/twin-a:predict", json=1).json() == "twin a"
    assert httpx.get(server.url + "/v1/models/echo").status_code == 200
    for _ in range(2):
        assert httpx.post(server.url + "/v1/models/echo:predict", json=[0]).json() == [0]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'kingpost_model_predictions_total{model="twin-a"} 1' in metrics
    assert 'kingpost_model_predictions_total{model="echo"} 2' in metrics
    assert 'kingpost_model_ready{model="echo"} 1' in metrics
    for method, path in (("POST", "/v1/models/model:predict"), ("GET", "/v1/models/model"),
                         ("POST", "/v2/models/nope/infer"), ("GET", "/v2/models/nope")):
        answer = httpx.request(method, server.url + path, json=1)
        assert answer.status_code == 404, (path, answer.text)
        assert "serves no model" in answer.json()["error"] and "echo, twin-a" in answer.json()["error"]


def test_a_repository_unloads_to_free_memory_and_loads_again(serve: Callable[..., Server], tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    shutil.copytree(bundle_path("v2_memory"), repository / "a_big")  # first: the app's default runtime
    shutil.copytree(bundle_path("echo"), repository / "echo")
    server = serve(repository, wait="live")
    wait_ready(server)
    url = server.url
    index = httpx.post(url + "/v2/repository/index").json()
    assert {m["name"]: m["state"] for m in index} == {"big": "READY", "echo": "READY"}
    assert httpx.post(url + "/v1/models/big:predict", json=1).json()["size"] == 96 * 1024 * 1024 // 8

    loaded = rss_mb(server.pid)
    assert httpx.post(url + "/v2/repository/models/big/unload").status_code == 200
    unloaded = rss_mb(server.pid)
    for method, path in (("POST", "/v1/models/big:predict"), ("POST", "/v2/models/big/infer"),
                         ("GET", "/v2/models/big/ready")):
        answer = httpx.request(method, url + path, json={"inputs": []})
        assert answer.status_code == 503 and "is unloaded; load it with POST" in answer.json()["error"], answer.text
    assert {m["name"]: m["state"] for m in httpx.post(url + "/v2/repository/index").json()}["big"] == "UNAVAILABLE"
    assert httpx.post(url + "/v1/models/echo:predict", json=[1]).json() == [1]  # the other one never noticed

    assert httpx.post(url + "/v2/repository/models/big/load", timeout=60).status_code == 200
    reloaded = rss_mb(server.pid)
    assert httpx.post(url + "/v1/models/big:predict", json=2).json()["echo"] == 2
    print(f"RSS: loaded {loaded:.0f} MiB, unloaded {unloaded:.0f} MiB, loaded again {reloaded:.0f} MiB")
    assert loaded - unloaded > 96 * 0.8, (loaded, unloaded)
    assert reloaded - unloaded > 96 * 0.8, (reloaded, unloaded)

    # A bundle copied into the repository while serving loads by name; an unknown name is a 404.
    shutil.copytree(bundle_path("twin_b"), repository / "twin_b")
    assert httpx.post(url + "/v2/repository/models/twin-b/load", timeout=60).status_code == 200
    assert httpx.post(url + "/v2/models/twin-b/infer", json={"inputs": [
        {"name": "x", "shape": [1], "datatype": "INT8", "data": [0]}]}).json()["outputs"][0]["data"] == ["twin b"]
    missing = httpx.post(url + "/v2/repository/models/nope/load")
    assert missing.status_code == 404 and "no bundle named 'nope'" in missing.json()["error"]


def test_a_bundle_that_fails_to_load_by_repository_is_a_400_and_the_server_keeps_serving(
        serve: Callable[..., Server], tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    shutil.copytree(bundle_path("echo"), repository / "echo")
    server = serve(repository, wait="live")
    wait_ready(server)
    shutil.copytree(bundle_path("load_raises"), repository / "load_raises")
    name = next(m["name"] for m in httpx.post(server.url + "/v2/repository/index").json() if m["name"] != "echo")
    answer = httpx.post(server.url + f"/v2/repository/models/{name}/load", timeout=60)
    assert answer.status_code == 400 and "failed to load" in answer.json()["error"], answer.text
    assert httpx.post(server.url + "/v1/models/echo:predict", json=[3]).json() == [3]


@pytest.mark.parametrize(("args", "message"), [
    (["serve", "{echo}", "{echo_copy}"], "model name 'echo' is already taken by"),
    (["serve", "{echo}", "{empty}"], "expected a bundle directory (with config.yaml) or a repository"),
    (["ray", "{echo}", "{echo_copy}"], "kingpost ray takes one bundle directory, found 2"),
    (["context", "{echo}", "{echo_copy}", "{empty}/out"], "kingpost context takes one bundle directory, found 2"),
    (["image", "{echo}", "{echo_copy}"], "kingpost image takes one bundle directory, found 2"),
    (["serve", "--isolated", "{echo}", "{echo_copy}"], "--isolated takes one bundle"),
])
def test_commands_say_in_one_sentence_what_they_take(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    shutil.copytree(bundle_path("echo"), tmp_path / "echo_copy")
    names = {"echo": str(bundle_path("echo")), "echo_copy": str(tmp_path / "echo_copy"),
             "empty": str(tmp_path / "empty")}
    done = subprocess.run([sys.executable, "-m", "kingpost", *(a.format(**names) for a in args)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_several_models_on_two_workers_serve_and_refuse_repository_changes(serve: Callable[..., Server]) -> None:
    server = serve(bundle_path("echo"), str(bundle_path("twin_a")), "--workers", "2", wait="live")
    wait_ready(server)
    assert "(2 workers)" in server.stderr()
    assert httpx.post(server.url + "/v1/models/twin-a:predict", json=1).json() == "twin a"
    assert httpx.post(server.url + "/v1/models/echo:predict", json=[2]).json() == [2]
    refused = httpx.post(server.url + "/v2/repository/models/echo/unload")
    assert refused.status_code == 400 and "with 2 workers" in refused.json()["error"]
