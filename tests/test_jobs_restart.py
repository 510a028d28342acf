"""Nothing lost: a server SIGKILLed mid-queue and started again on the same store accounts for
every job; with reruns off (KINGPOST_JOBS_RERUN=0) none runs twice, even with two workers sharing
the store. Also on PostgreSQL, and a streaming predict's chunks stored as they come."""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import bundle_path
from jobs_helpers import FINISHED, wait_job
from serving import Server

JOBS = 40
SUBMIT = "/v1/models/model:async_predict"


def _kill_mid_queue_and_restart(serve: Callable[..., Server], store: list[str], log: Path, env: dict[str, str],
                                *workers: str) -> tuple[dict[str, dict[str, Any]], collections.Counter[str]]:
    first = serve(bundle_path("jobs_probe"), *store, *workers, env=env)
    with httpx.Client(base_url=first.url, timeout=30) as http:
        ids = [http.post(SUBMIT, json={"model_input": {"i": i, "sleep_ms": 25, "log": str(log)}}).json()["request_id"]
               for i in range(JOBS)]
    first.wait_until(lambda: log.exists() and len(log.read_text().split()) >= JOBS // 4, "a quarter of the jobs")
    first.kill()  # SIGKILL, the whole process group: no drain, leases left behind
    assert first.returncode == -signal.SIGKILL
    assert len(log.read_text().split()) < JOBS, "the queue was already empty; nothing to resume"
    second = serve(bundle_path("jobs_probe"), *store, *workers, env=env)
    with httpx.Client(base_url=second.url, timeout=30) as http:
        jobs = {job_id: wait_job(http, job_id, FINISHED, timeout=60) for job_id in ids}
    runs = collections.Counter(log.read_text().split())
    for job_id, job in jobs.items():
        if job["status"] == "succeeded":
            assert job["output"]["echo"]["i"] == ids.index(job_id)
    return jobs, runs


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_after_sigkill_queued_jobs_run_and_the_interrupted_ones_are_not_rerun(
        serve: Callable[..., Server], tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    store = ["--jobs-dir", str(tmp_path / "jobs")] if backend == "sqlite" else \
        ["--jobs-database", request.getfixturevalue("postgres_url")]
    env = {"KINGPOST_JOBS_RERUN": "0", "KINGPOST_JOBS_LEASE_S": "1", "KINGPOST_JOBS_POLL_S": "0.1"}
    log = tmp_path / f"runs-{backend}"
    jobs, runs = _kill_mid_queue_and_restart(serve, store, log, env, "--workers", "2")
    statuses = collections.Counter(job["status"] for job in jobs.values())
    assert set(statuses) <= {"succeeded", "interrupted"}, statuses
    assert statuses["succeeded"] + statuses["interrupted"] == JOBS
    assert statuses["interrupted"] <= 2  # at most what each of the two workers was running at the kill
    assert max(runs.values()) == 1, runs  # no job ran twice
    succeeded = {str(job["output"]["echo"]["i"]) for job in jobs.values() if job["status"] == "succeeded"}
    assert succeeded <= set(runs)
    assert len({job["output"]["pid"] for job in jobs.values() if job["status"] == "succeeded"}) >= 2


def test_after_sigkill_with_reruns_on_every_job_succeeds(serve: Callable[..., Server], tmp_path: Path) -> None:
    env = {"KINGPOST_JOBS_LEASE_S": "1", "KINGPOST_JOBS_POLL_S": "0.1"}
    jobs, runs = _kill_mid_queue_and_restart(serve, ["--jobs-dir", str(tmp_path / "jobs")], tmp_path / "runs", env)
    assert {job["status"] for job in jobs.values()} == {"succeeded"}
    assert len(runs) == JOBS
    assert sum(n == 2 for n in runs.values()) <= 1 and max(runs.values()) <= 2  # only the one running at the kill
    assert sum(job["attempts"] for job in jobs.values()) <= JOBS + 1


def test_a_streaming_jobs_chunks_are_stored_as_they_come_and_cancel_stops_it(serve: Callable[..., Server],
                                                                             tmp_path: Path) -> None:
    server = serve(bundle_path("server_stream"), "--jobs-dir", str(tmp_path / "jobs"))
    gates, log = [tmp_path / "g1", tmp_path / "g2", tmp_path / "g3"], tmp_path / "log"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        body = {"chunks": ["a", "b", "c", "d"], "gates": [str(g) for g in gates], "log": str(log)}
        job_id = http.post(SUBMIT, json={"model_input": body}).json()["request_id"]

        def chunks() -> list[str]:
            return list(http.get(f"/v1/jobs/{job_id}").json().get("chunks", []))

        server.wait_until(lambda: chunks() == ["a"], "the first chunk to be stored")
        gates[0].touch()
        server.wait_until(lambda: chunks() == ["a", "b"], "the second chunk to be stored")
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
        assert http.delete(f"/v1/jobs/{job_id}").status_code == 202
        gates[1].touch()
        gates[2].touch()
        job = wait_job(http, job_id)
        assert job["status"] == "cancelled" and job["chunks"] == ["a", "b"]
        server.wait_until(lambda: "closed" in log.read_text(), "the generator to be closed")
        # The generator was blocked producing "c" when the cancel came: it is closed at that next
        # chunk, which is not stored, and produces no more.
        assert "yield d" not in log.read_text()

        done = http.post(SUBMIT, json={"model_input": {"chunks": ["x", "y"]}}).json()["request_id"]
        finished = wait_job(http, done)
        assert (finished["status"], finished["output"], finished["chunks"]) == ("succeeded", "xy", ["x", "y"])


@pytest.mark.parametrize("rerun", ["1", "0"])
def test_a_stopped_server_hands_a_job_still_running_after_the_grace_period_back(
        serve: Callable[..., Server], tmp_path: Path, rerun: str) -> None:
    store, gate, log = ["--jobs-dir", str(tmp_path / "jobs")], tmp_path / "gate", tmp_path / "log"
    env = {"KINGPOST_JOBS_RERUN": rerun}
    first = serve(bundle_path("jobs_probe"), *store, "--grace-period", "0.5", env=env)
    with httpx.Client(base_url=first.url, timeout=30) as http:
        job_id = http.post(SUBMIT, json={"model_input": {"i": 7, "gate": str(gate), "log": str(log)}}).json()[
            "request_id"]
        wait_job(http, job_id, {"running"})
    assert first.stop() == 0  # SIGTERM: the job gets the grace period, then is handed back at once
    gate.touch()
    second = serve(bundle_path("jobs_probe"), *store, env=env)
    with httpx.Client(base_url=second.url, timeout=30) as http:
        started = time.monotonic()
        job = wait_job(http, job_id)
    if rerun == "1":
        assert job["status"] == "succeeded" and job["attempts"] == 1  # the stopped attempt was not counted
        assert time.monotonic() - started < 5  # no lease to wait out
    else:
        assert job["status"] == "interrupted" and "server stopped" in job["error"]
        assert log.read_text().split() == ["7"]


def test_a_job_that_finishes_within_the_grace_period_is_kept(serve: Callable[..., Server], tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    server = serve(bundle_path("jobs_probe"), "--jobs-dir", str(tmp_path / "jobs"), "--grace-period", "10")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        job_id = http.post(SUBMIT, json={"model_input": {"i": 8, "gate": str(gate)}}).json()["request_id"]
        wait_job(http, job_id, {"running"})
    server.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    gate.touch()
    assert server.wait() == 0
    again = serve(bundle_path("jobs_probe"), "--jobs-dir", str(tmp_path / "jobs"))
    with httpx.Client(base_url=again.url, timeout=30) as http:
        job = http.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["output"]["pid"] == server.pid


def test_a_webhook_still_owed_at_a_sigkill_is_delivered_after_the_restart(serve: Callable[..., Server],
                                                                           tmp_path: Path) -> None:
    from jobs_helpers import Receiver
    from kingpost.jobs import webhooks

    store = ["--jobs-dir", str(tmp_path / "jobs"), "--webhook-secret", "from-the-flag"]
    env = {"KINGPOST_WEBHOOK_DELAY_S": "0.05", "KINGPOST_JOBS_POLL_S": "0.1"}
    with Receiver(failures=1000).running() as receiver:  # down, as far as kingpost can tell
        first = serve(bundle_path("jobs_probe"), *store, env=env)
        with httpx.Client(base_url=first.url, timeout=30) as http:
            job_id = http.post(SUBMIT, json={"model_input": {"i": "owed"}, "webhook_endpoint": receiver.url}).json()[
                "request_id"]
            first.wait_until(lambda: len(receiver.calls) >= 2, "two failed deliveries")
        first.kill()
        receiver.failures = 0  # the receiver is back
        failed_before = len(receiver.calls)
        second = serve(bundle_path("jobs_probe"), *store, env=env)
        with httpx.Client(base_url=second.url, timeout=30) as http:
            second.wait_until(lambda: http.get(f"/v1/jobs/{job_id}").json()["webhook"]["state"] == "delivered",
                              "the webhook to be delivered after the restart")
            job = http.get(f"/v1/jobs/{job_id}").json()
        time.sleep(0.3)
        calls = list(receiver.calls)
    assert [status for _, _, status in calls[failed_before:]] == [200]  # delivered once
    headers, body, _ = calls[-1]
    assert webhooks.verify("from-the-flag", headers["x-kingpost-timestamp"], body, headers["x-kingpost-signature"])
    assert job["output"]["echo"] == {"i": "owed"}  # the output stored before the kill is kept
    assert [a["status"] for a in job["webhook"]["attempts"]][-1] == 200


def test_finished_jobs_are_deleted_after_their_retention(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve(bundle_path("jobs_probe"), "--jobs-dir", str(tmp_path / "jobs"),
                   env={"KINGPOST_JOBS_RETENTION_S": "1"})
    with httpx.Client(base_url=server.url, timeout=30) as http:
        job_id = http.post(SUBMIT, json={"model_input": {"i": 1}}).json()["request_id"]
        assert wait_job(http, job_id)["status"] == "succeeded"
        server.wait_until(lambda: http.get(f"/v1/jobs/{job_id}").status_code == 404, "the job to be purged",
                          timeout=10)
        assert "deleted after its retention" in http.get(f"/v1/jobs/{job_id}").json()["error"]
