"""Helpers shared by the async-jobs tests: wait for a job, and a webhook receiver on loopback."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

FINISHED = {"succeeded", "failed", "cancelled", "expired", "interrupted"}


def wait_job(client: httpx.Client, job_id: str, statuses: set[str] | None = None,
             timeout: float = 30) -> dict[str, Any]:
    """Poll GET /v1/jobs/<id> until its status is one of ``statuses`` (default: any finished one)."""
    wanted = statuses or FINISHED
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in wanted:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is still {job['status']} after {timeout} s: {job}"
        time.sleep(0.02)


class Receiver:
    """A webhook endpoint on a free loopback port that answers ``failures`` 500s, then 200s."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.calls) < receiver.failures else 200
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(5)
