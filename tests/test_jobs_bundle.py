"""``bundle.submit(x)`` in process: a durable job on the same store a server uses, with a handle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import kingpost
from conftest import bundle_path
from serving import Server


def test_submit_returns_a_handle_whose_result_is_the_output(load: Callable[..., Any], tmp_path: Path) -> None:
    bundle = load(bundle_path("jobs_probe"), jobs=tmp_path / "jobs")
    handles = [bundle.submit({"i": i}) for i in range(5)]
    assert [h.result(timeout=30)["echo"] for h in handles] == [{"i": i} for i in range(5)]
    status = handles[0].status()
    assert status["status"] == "succeeded" and status["attempts"] == 1 and status["request_id"] == handles[0].id


def test_cancel_result_timeout_and_failures(load: Callable[..., Any], tmp_path: Path) -> None:
    bundle = load(bundle_path("jobs_probe"), jobs=tmp_path / "jobs")
    gate = tmp_path / "gate"
    blocker = bundle.submit({"i": "blocker", "gate": str(gate)})
    waiting = bundle.submit({"i": "waiting"}, priority=2)
    with pytest.raises(TimeoutError, match="still"):
        waiting.result(timeout=0.2)
    assert waiting.cancel()["status"] == "cancelled"
    with pytest.raises(kingpost.JobError, match="cancelled") as info:
        waiting.result(timeout=5)
    assert info.value.status == "cancelled"
    gate.touch()
    assert blocker.result(timeout=30)["echo"]["i"] == "blocker"
    failing = bundle.submit({"fail": str(tmp_path / "fails"), "times": 5}, retry={"max_attempts": 2,
                                                                                 "initial_delay_ms": 10})
    with pytest.raises(kingpost.JobError, match="failed: the model's predict raised"):
        failing.result(timeout=30)
    assert failing.status()["attempts"] == 2
    with pytest.raises(kingpost.InputError, match="priority"):
        bundle.submit(1, priority=5)


def test_without_a_store_submit_says_how_to_get_one(load: Callable[..., Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KINGPOST_JOBS_DIR", raising=False)
    monkeypatch.delenv("KINGPOST_JOBS_DATABASE", raising=False)
    with pytest.raises(kingpost.BundleError, match=r"kingpost.load\(DIR, jobs=DIR_OR_URL\)"):
        load(bundle_path("jobs_probe")).submit(1)


def test_a_job_submitted_in_process_is_run_and_read_by_a_server_on_the_same_store(
        load: Callable[..., Any], serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(bundle_path("jobs_probe"), "--jobs-dir", str(tmp_path / "jobs"))
    with httpx.Client(base_url=server.url) as http:
        job_id = http.post("/v1/models/model:async_predict", json={"model_input": {"i": "http"}}).json()["request_id"]
        bundle = load(bundle_path("jobs_probe"), jobs=tmp_path / "jobs")
        handle = bundle.submit({"i": "python"})
        assert handle.result(timeout=30)["echo"] == {"i": "python"}
        seen = http.get(f"/v1/jobs/{handle.id}").json()
        assert seen["status"] == "succeeded" and seen["output"]["echo"] == {"i": "python"}
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
