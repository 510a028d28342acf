"""``kingpost serve`` freezes what is alive once its models load (server/heap.py), out of the
collector's passes; an unloaded model's objects go back to the collector, so even a model held in
a reference cycle is freed. The bundle (tests/bundles/heap_probe) reports ``gc.get_freeze_count()``
from inside the server and writes a file when its cycle is collected."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import bundle_path
from serving import Server

pytestmark = pytest.mark.timeout(120)

PREDICT = "/v1/models/heap:predict"


def _frozen(server: Server) -> int:
    reply = httpx.post(server.url + PREDICT, json={}, timeout=10)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["frozen"])


def test_a_server_freezes_its_heap_once_loaded(serve: Callable[..., Server]) -> None:
    assert _frozen(serve(bundle_path("heap_probe"))) > 10_000  # the modules, the app, the model


@pytest.mark.parametrize("args, env", [((), {"KINGPOST_GC_FREEZE": "0"}), (("--reload",), {})],
                         ids=["turned-off", "reload"])
def test_nothing_is_frozen_when_turned_off_or_reloading(
        serve: Callable[..., Server], args: tuple[str, ...], env: dict[str, str]) -> None:
    assert _frozen(serve(bundle_path("heap_probe"), *args, env=env)) == 0


def test_an_unloaded_model_in_a_reference_cycle_is_freed(serve: Callable[..., Server], tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    shutil.copytree(bundle_path("echo"), repository / "echo")
    shutil.copytree(bundle_path("heap_probe"), repository / "heap")
    probe = tmp_path / "collected"
    server = serve(repository, wait="live", env={"HEAP_PROBE_FILE": str(probe)})
    server.wait_status("/v2/health/ready", 200, timeout=60)
    assert _frozen(server) > 10_000  # the heap model was frozen with the rest
    assert not probe.exists()
    assert httpx.post(server.url + "/v2/repository/models/heap/unload", timeout=30).status_code == 200
    deadline = time.monotonic() + 10
    while not probe.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert probe.exists(), "the unloaded model's cycle was never collected (still frozen?)"
    assert httpx.post(server.url + "/v1/models/echo:predict", json=[1, 2], timeout=10).json() == [1, 2]
