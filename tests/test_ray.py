"""Ray Serve: resources and runtime.ray become Serve options; a real local cluster serves a bundle.

The cluster test runs a driver (this file, ``python tests/test_ray.py --driver OUT``) inside a
private network namespace (``unshare -rn``): Ray's replicas open ports on every interface, so the
namespace keeps them off the machine's network. The driver deploys ``ray_probe`` on 2 replicas,
sends 200 concurrent requests, adds ``ray_stream`` as a second application (one logical GPU),
streams from it, stops everything with SIGINT and writes what it saw as JSON; the test asserts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
BUNDLES = HERE / "bundles"
PORT = 8000
REQUESTS = 200


# -- options, no Ray needed -------------------------------------------------------------------


def _config(tmp_path: Path, text: str) -> Any:
    from kingpost.config import load_config

    (tmp_path / "config.yaml").write_text(text)
    return load_config(tmp_path)


def test_resources_become_ray_resources(tmp_path: Path) -> None:
    from kingpost.defaults import RAY_MAX_ONGOING_REQUESTS
    from kingpost.deploy._ray_options import deployment_options

    config = _config(tmp_path, "resources:\n  cpu: 500m\n  accelerator: A10G:2\n")
    assert deployment_options(config) == {
        "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 2},
        "max_ongoing_requests": RAY_MAX_ONGOING_REQUESTS,
    }
    config = _config(tmp_path, "resources:\n  cpu: '2'\n  use_gpu: true\n")
    assert deployment_options(config)["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 1}


def test_runtime_ray_holds_defaults_and_arguments_override_them(tmp_path: Path) -> None:
    from kingpost.deploy._ray_options import deployment_options

    config = _config(tmp_path, "runtime:\n  ray:\n"
                               "    autoscaling_config: {max_replicas: 3, target_ongoing_requests: 8}\n"
                               "    max_ongoing_requests: 10\n    ray_actor_options: {num_cpus: 3}\n")
    assert deployment_options(config) == {
        "autoscaling_config": {"max_replicas": 3, "target_ongoing_requests": 8},
        "max_ongoing_requests": 10, "ray_actor_options": {"num_cpus": 3},
    }
    fixed = deployment_options(config, num_replicas=2, max_ongoing_requests=4)
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed and fixed["max_ongoing_requests"] == 4
    scaled = deployment_options(config, autoscaling={"min_replicas": 1, "max_replicas": 5})
    assert scaled["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 5, "target_ongoing_requests": 8}


def test_max_ongoing_requests_leaves_room_for_batches_and_the_queue(tmp_path: Path) -> None:
    from kingpost.deploy._ray_options import deployment_options

    config = _config(tmp_path, "runtime:\n  batching: {max_batch_size: 100}\n")
    assert deployment_options(config)["max_ongoing_requests"] == 200
    config = _config(tmp_path, "runtime:\n  max_queue: 300\n  predict_concurrency: 2\n")
    assert deployment_options(config)["max_ongoing_requests"] == 302


@pytest.mark.parametrize(("ray", "message"), [
    ("num_replicas: two", "runtime.ray.num_replicas: expected an integer >= 1, found 'two'."),
    ("autoscaling_config: 4", "runtime.ray.autoscaling_config: expected a mapping of keys to values, found 4."),
    ("{num_replicas: 2, autoscaling_config: {max_replicas: 3}}",
     "runtime.ray: expected num_replicas or autoscaling_config, not both, found <both>."),
])
def test_bad_runtime_ray_is_one_sentence(tmp_path: Path, ray: str, message: str) -> None:
    from kingpost.deploy._ray_options import deployment_options
    from kingpost.errors import ConfigError

    config = _config(tmp_path, f"runtime:\n  ray: {ray}\n" if ray.startswith("{") else f"runtime:\n  ray:\n    {ray}\n")
    with pytest.raises(ConfigError) as info:
        deployment_options(config)
    assert str(info.value) == f"{tmp_path / 'config.yaml'}: {message}"


def test_parse_autoscale() -> None:
    from kingpost.deploy._ray_options import parse_autoscale

    assert parse_autoscale("1:4") == {"min_replicas": 1, "max_replicas": 4}
    assert parse_autoscale("0:2") == {"min_replicas": 0, "max_replicas": 2}
    for bad in ("4", "4:1", "a:b", "0:0"):
        with pytest.raises(ValueError, match="expected MIN:MAX"):
            parse_autoscale(bad)


def test_without_ray_the_cli_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from kingpost.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = CliRunner().invoke(main, ["ray", str(BUNDLES / "ray_probe")])
    assert result.exit_code == 1
    assert result.output == 'error: Ray Serve is not installed; install it with: pip install "kingpost[ray]"\n'


def test_the_ingress_sets_serves_switches_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from kingpost.deploy import _ray_ingress as ingresses
    from kingpost.errors import PackagingError

    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    monkeypatch.setenv("RAY_SERVE_ENABLE_DIRECT_INGRESS", "1")
    for key in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"):
        monkeypatch.delenv(key, raising=False)
    ingresses.apply("proxy")  # an exported switch does not turn HAProxy back on
    assert (os.environ["RAY_SERVE_ENABLE_HA_PROXY"], os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"]) == ("0", "0")
    assert "RAY_SERVE_HAPROXY_STATS_PORT" not in os.environ
    ingresses.apply("haproxy")
    assert (os.environ["RAY_SERVE_ENABLE_HA_PROXY"], os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"]) == ("1", "1")
    assert os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "2"
    stats, metrics = int(os.environ["RAY_SERVE_HAPROXY_STATS_PORT"]), int(os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"])
    assert stats != metrics and not {stats, metrics} & {8404, 9101}  # not HAProxy's fixed ports: free ones
    for port in (stats, metrics):
        with socket.socket() as sock:
            sock.bind(("", port))
    # without a binary the default falls back to Serve's proxy, and asking for HAProxy says what is missing
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", "/nonexistent/haproxy")
    assert ingresses.choose(None) == "proxy"
    with pytest.raises(PackagingError, match=r"^--ingress haproxy needs an HAProxy binary: .*PATH\.$"):
        ingresses.choose("haproxy")


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='needs Ray Serve: pip install "kingpost[ray]"')
@pytest.mark.parametrize(("args", "message"), [
    (["--ingress", "fast"], "--ingress: expected one of haproxy, proxy, found 'fast'."),
    (["--ingress", "proxy", "--address", "10.0.0.5:6379"],
     "--ingress: applies to the local cluster kingpost starts; a cluster given by --address keeps the "
     "ingress its Serve was started with."),
])
def test_a_bad_ingress_is_one_sentence(args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from kingpost.cli import main

    result = CliRunner().invoke(main, ["ray", str(BUNDLES / "ray_probe"), *args])
    assert (result.exit_code, result.output) == (2, f"error: {message}\n")


# -- a real cluster -----------------------------------------------------------------------------


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason='needs Ray Serve: pip install "kingpost[ray]"')
@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -rn (a private network namespace) and ip")
def test_two_replicas_serve_200_concurrent_requests_and_stop_clean(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    log = tmp_path / "driver.log"
    command = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
               sys.executable, str(Path(__file__).resolve()), "--driver", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
    start = time.monotonic()
    try:
        with log.open("wb") as sink:
            code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=200).returncode
    finally:
        leftover = _kill_leftovers(tmp_path / "pids.json")
    elapsed = time.monotonic() - start
    tail = log.read_text(errors="replace")[-6000:]
    assert code == 0 and out.exists(), f"driver exited {code}:\n{tail}"
    seen = json.loads(out.read_text())
    assert "error" not in seen, seen["error"] + "\n" + tail
    print(f"\nray test: ready after {seen['ready_s']:.1f} s, whole run {elapsed:.1f} s, "
          f"a new route served after {seen['route_lag_s']:.2f} s, a stream after a disconnect in "
          f"{seen['after_disconnect_s']:.2f} s")

    # every answer is the one asked for, in JSON and in msgpack
    answers = seen["answers"]
    assert len(answers) == REQUESTS
    for tag, (status, body) in answers.items():
        assert status == 200, (tag, status, body)
        assert body["tag"] == int(tag)
    # both replicas served, each loaded once and never let two callers into predict
    pids = {body["pid"] for _, body in answers.values()}
    assert len(pids) == 2, pids
    assert all(body["loads"] == 1 for _, body in answers.values())
    assert max(body["max_in_predict"] for _, body in answers.values()) == 1
    assert max(body["max_in_preprocess"] for _, body in answers.values()) > 1  # requests did overlap
    # the rest of kingpost serve's surface
    assert seen["liveness"] == 200 and seen["readiness"] == 200
    assert seen["bad_json"][0] == 400 and set(seen["bad_json"][1]) == {"error"}
    assert seen["handle"] == {"tag": -1, "pid": seen["handle"]["pid"], "loads": 1,
                              "max_in_predict": 1, "max_in_preprocess": seen["handle"]["max_in_preprocess"]}
    # a second bundle in the same cluster: a logical GPU, a route prefix, a stream that trickles
    first, *rest = seen["stream"]
    assert json.loads(first["text"]) == {"cuda_visible_devices": "0"}
    assert [c["text"] for c in rest] == ["chunk 0\n", "chunk 1\n", "chunk 2\n"]
    assert rest[-1]["at"] - first["at"] > 1.0, seen["stream"]  # the first chunk came before the end
    # each chunk as it was yielded, 0.5 s apart, through Serve's proxy: none held back and coalesced
    arrivals = [c["at"] for c in seen["stream"]]
    assert all(later - earlier > 0.3 for earlier, later in itertools.pairwise(arrivals)), seen["stream"]
    assert seen["after_disconnect_s"] < 4, seen["after_disconnect_s"]
    assert seen["handle_stream"] == [seen["stream"][0]["text"], "chunk 0\n"]
    # kingpost.AsyncClient talks to the deployment as to `kingpost serve`
    assert seen["client"] == [-2, -3]
    assert "".join(seen["client_stream"]).endswith("chunk 0\nchunk 1\n")
    # kingpost's default front door: HAProxy itself listens on the port and URL kingpost printed
    assert seen["ingress"] == "haproxy" and seen["listener"] == "haproxy", (seen["ingress"], seen["listener"])
    # and nothing of Ray is left
    assert seen["ray_processes"] >= 3 and {"raylet", "gcs_server"} <= set(seen["ray_names"])
    assert seen["left_after_close"] == [] and leftover == []


def _kill_leftovers(pids_file: Path) -> list[str]:
    """Kill whatever the driver's cluster left running; return what was still there."""
    if not pids_file.exists():
        return []
    alive = [(pid, name) for pid, name in json.loads(pids_file.read_text()) if _alive(pid)]
    for pid, _ in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return [f"{name} ({pid})" for pid, name in alive]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# -- the driver, run inside the namespace ----------------------------------------------------


def _descendants() -> dict[int, str]:
    """This process's descendants: pid -> name."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, _, rest = stat.partition(" (")[2].rpartition(") ")
            parents[int(entry.name)] = int(rest.split()[1])
            names[int(entry.name)] = name
    found: dict[int, str] = {}
    frontier = [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = names[pid]
                frontier.append(pid)
    return found


def _listener(port: int, processes: dict[int, str]) -> str | None:
    """The name of the process (among these) that holds the socket listening on this TCP port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for pid, name in processes.items():
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return name
    return None


def _drive(out: Path) -> None:
    import threading
    import traceback

    from kingpost.deploy import ray as kingpost_ray

    seen: dict[str, Any] = {}
    start = time.monotonic()
    deployment = kingpost_ray.deploy(BUNDLES / "ray_probe", port=PORT, num_replicas=2,
                                     init_options={"num_cpus": 4, "num_gpus": 1})
    seen["ready_s"] = time.monotonic() - start
    processes = _descendants()
    seen["ingress"], seen["listener"] = deployment.ingress, _listener(PORT, processes)
    (out.parent / "pids.json").write_text(json.dumps(sorted(processes.items())))

    def client() -> None:
        try:
            import asyncio

            asyncio.run(_exercise(deployment.url, seen))
        except BaseException:  # reported to the test
            seen["error"] = traceback.format_exc()
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=client)
    try:
        thread.start()
        deployment.wait()
    except KeyboardInterrupt:  # the signal came before wait() listened for it
        pass
    finally:
        thread.join()
        deployment.close()
    deadline = time.monotonic() + 20
    while [pid for pid in processes if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    (out.parent / "pids.json").write_text(json.dumps(sorted(processes.items())))
    seen["ray_processes"] = len(processes)
    seen["ray_names"] = sorted(set(processes.values()))
    seen["left_after_close"] = [f"{name} ({pid})" for pid, name in processes.items() if _alive(pid)]
    out.write_text(json.dumps(seen))


async def _exercise(url: str, seen: dict[str, Any]) -> None:
    import asyncio

    import httpx
    import msgpack
    from ray import serve

    from kingpost.deploy import ray as kingpost_ray

    predict = f"{url}/v1/models/model:predict"
    limits = httpx.Limits(max_connections=REQUESTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        seen["liveness"] = (await http.get(f"{url}/")).status_code
        seen["readiness"] = (await http.get(f"{url}/v1/models/model")).status_code

        async def ask(tag: int) -> tuple[str, tuple[int, Any]]:
            if tag % 2:
                reply = await http.post(predict, content=msgpack.packb({"tag": tag}),
                                        headers={"content-type": "application/msgpack"})
                return str(tag), (reply.status_code, msgpack.unpackb(reply.content))
            reply = await http.post(predict, json={"tag": tag})
            return str(tag), (reply.status_code, reply.json())

        seen["answers"] = dict(await asyncio.gather(*(ask(tag) for tag in range(REQUESTS))))
        reply = await http.post(predict, content=b"{not json", headers={"content-type": "application/json"})
        seen["bad_json"] = [reply.status_code, reply.json()]

        handle = serve.get_app_handle("ray-probe")
        seen["handle"] = await handle.predict.remote({"tag": -1})

        serve.run(kingpost_ray.application(BUNDLES / "ray_stream"), name="ray-stream", route_prefix="/stream")
        # HAProxy learns a new route prefix a moment after serve.run returns (until then "/" answers 404)
        added = time.monotonic()
        while (await http.get(f"{url}/stream/v1/models/model")).status_code != 200:
            assert time.monotonic() - added < 30, "the /stream route never reached the front door"
            await asyncio.sleep(0.1)
        seen["route_lag_s"] = time.monotonic() - added
        chunks = []
        begun = time.monotonic()
        async with http.stream("POST", f"{url}/stream/v1/models/model:predict", json={"chunks": 3}) as reply:
            assert reply.status_code == 200, await reply.aread()
            async for text in reply.aiter_text():
                chunks.append({"text": text, "at": time.monotonic() - begun})
        seen["stream"] = chunks
        # a client that leaves after the first chunk frees the predict slot (one replica, one slot):
        # the next stream starts at once, not after the 10 s the first generator would still run
        async with http.stream("POST", f"{url}/stream/v1/models/model:predict", json={"chunks": 20}) as reply:
            await anext(reply.aiter_text())
        left = time.monotonic()
        async with http.stream("POST", f"{url}/stream/v1/models/model:predict", json={"chunks": 1}) as reply:
            await anext(reply.aiter_text())
        seen["after_disconnect_s"] = time.monotonic() - left
        streamer = serve.get_app_handle("ray-stream").options(stream=True)
        seen["handle_stream"] = [chunk async for chunk in streamer.stream.remote({"chunks": 1})]

    import kingpost  # the same client as for `kingpost serve`

    async with kingpost.AsyncClient(url) as client:
        await client.wait_ready(30)
        seen["client"] = [(await client.predict({"tag": -2}))["tag"],
                          (await client.predict({"tag": -3}, msgpack=True))["tag"]]
    async with kingpost.AsyncClient(f"{url}/stream") as client:
        seen["client_stream"] = [chunk async for chunk in client.predict_stream({"chunks": 2})]


if __name__ == "__main__" and sys.argv[1:2] == ["--driver"]:
    _drive(Path(sys.argv[2]))
