"""Live reload: ``kingpost serve --reload`` under load, a broken version, and ``Bundle.reload()``.

The bound stated in the README: after a save, answers switch to the new code within SWITCH_BOUND_S
(watch debounce 100 ms + importing and loading the new version; about 0.2 s here for this bundle).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import kingpost
from serving import Server, in_background

SWITCH_BOUND_S = 3.0
PREDICT = "/v1/models/model:predict"


def _edit(bundle: Path, old: str, new: str) -> None:
    """Change model.py the way many editors save: write a temporary file, rename it over the old one."""
    path = bundle / "model" / "model.py"
    text = path.read_text()
    assert old in text
    tmp = path.with_name("model.py.tmp")
    tmp.write_text(text.replace(old, new))
    os.replace(tmp, path)


def test_edit_postprocess_under_load(copy_bundle: Callable[..., Path], serve: Callable[..., Server],
                                     tmp_path: Path) -> None:
    bundle = copy_bundle("reload_probe")
    server = serve(bundle, "--reload", "--no-access-log")
    results: list[tuple[int, float, int, Any]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(20_000):  # bounded; stopped long before by `stop`
                if stop.is_set():
                    return
                response = client.post(PREDICT, json={"worker": worker})
                version = response.json().get("version") if response.status_code == 200 else None
                results.append((worker, time.monotonic(), response.status_code, version))

    workers = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(3)]
    for thread in workers:
        thread.start()
    try:
        server.wait_until(lambda: len(results) >= 50, "50 answers from the first version")
        # A request that is inside preprocess (of the old version) when the switch happens.
        mark = tmp_path / "inside"
        slow_input = {"sleep": 1.0, "mark": str(mark)}
        slow = in_background(lambda: httpx.post(server.url + PREDICT, json=slow_input, timeout=30))
        server.wait_until(mark.exists, "the slow request to be inside preprocess")
        edited = time.monotonic()
        _edit(bundle, '"version": 1', '"version": 2')
        first_new = server.wait_until(lambda: next((t for _, t, _, v in results if v == 2), None),
                                      "an answer from the edited postprocess", timeout=20)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in workers:
            thread.join(30)
    switched = first_new - edited
    print(f"answers switched {switched:.3f} s after the save; {len(results)} requests")
    assert [r for r in results if r[2] != 200] == []  # no request failed
    for worker in range(3):  # each client saw version 1, then version 2, never back
        versions = [v for w, _, _, v in results if w == worker]
        assert versions == sorted(versions) and versions[-1] == 2, versions
    assert switched < SWITCH_BOUND_S
    answer = slow()
    assert answer.status_code == 200 and answer.json() == {"version": 1, "input": slow_input}  # finished on the old
    server.wait_for_stderr(r"kingpost: reloaded after a change to model/model\.py \(\d+\.\d+ s\)")


def test_a_syntax_error_keeps_the_old_version_and_is_reported(copy_bundle: Callable[..., Path],
                                                              serve: Callable[..., Server]) -> None:
    bundle = copy_bundle("reload_probe")
    server = serve(bundle, "--reload")
    _edit(bundle, 'return {"version": 1,', 'return {"version": 1,,')
    line = server.wait_for_stderr("reload failed")[0]
    assert line == ("kingpost: reload failed after a change to model/model.py; still serving the previous "
                    "version: reload_probe/model/model.py, line 22: syntax error: invalid syntax.")
    assert httpx.post(server.url + PREDICT, json=[1], timeout=10).json() == {"version": 1, "input": [1]}
    ready = server.get("/v1/models/model")
    assert ready.status_code == 200
    assert ready.json()["reload_error"] == "reload_probe/model/model.py, line 22: syntax error: invalid syntax."
    assert server.get("/playground/info").json()["reload_error"] == ready.json()["reload_error"]

    _edit(bundle, '"version": 1,,', '"version": 3,')  # fixed: the next version loads and the report clears
    server.wait_until(lambda: httpx.post(server.url + PREDICT, json=[1], timeout=10).json()["version"] == 3,
                      "the fixed version to serve", timeout=20)
    assert "reload_error" not in server.get("/v1/models/model").json()
    assert server.get("/playground/info").json()["reload_error"] is None


def test_a_bundle_that_starts_broken_waits_for_a_fix(copy_bundle: Callable[..., Path],
                                                     serve: Callable[..., Server]) -> None:
    bundle = copy_bundle("reload_probe")
    _edit(bundle, "import time", "import time)")
    server = serve(bundle, "--reload", wait="live")
    server.wait_for_stderr("the model failed to load; waiting for a change to reload")
    assert server.wait_status("/v1/models/model", 500).json()["error"].startswith("the model failed to load")
    _edit(bundle, "import time)", "import time")
    server.wait_status("/v1/models/model", 200, timeout=20)
    assert httpx.post(server.url + PREDICT, json=2, timeout=10).json() == {"version": 1, "input": 2}


def test_reload_refuses_several_workers(tmp_path: Path) -> None:
    from conftest import bundle_path

    done = subprocess.run([sys.executable, "-m", "kingpost", "serve", str(bundle_path("reload_probe")), "--reload",
                           "--workers", "2", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == "error: --reload serves with one worker; drop --workers (or runtime.workers: 2).\n"


def test_bundle_reload_in_process(copy_bundle: Callable[..., Path], load: Callable[..., Any], tmp_path: Path) -> None:
    bundle = load(copy_bundle("reload_probe"))
    assert bundle.predict(1) == {"version": 1, "input": 1}
    mark = tmp_path / "inside"
    slow = in_background(lambda: bundle.predict({"sleep": 0.5, "mark": str(mark)}))
    while not mark.exists():  # bounded by the pytest timeout; the call starts at once
        time.sleep(0.005)
    _edit(bundle.bundle_dir, '"version": 1', '"version": 2')
    bundle.reload()
    assert bundle.predict(1) == {"version": 2, "input": 1}
    assert slow() == {"version": 1, "input": {"sleep": 0.5, "mark": str(mark)}}  # finished on the old version

    _edit(bundle.bundle_dir, "class Model:", "class Model(:")
    with pytest.raises(kingpost.ModelLoadError, match=r"model/model\.py, line \d+: syntax error"):
        bundle.reload()
    assert bundle.predict(1) == {"version": 2, "input": 1}  # still the last version that loaded
