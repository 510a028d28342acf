"""--log-format json against a real server: every stderr line a JSON object with the agreed fields."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from serving import Server

PREDICT = "/v1/models/model:predict"
FIELDS = {"time", "level", "logger", "message", "request_id", "model"}
ACCESS = FIELDS | {"route", "method", "path", "status", "duration_ms", "client"}


def json_lines(server: Server) -> list[dict[str, Any]]:
    lines = [line for line in server.stderr().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # raises on any line that is not one JSON object


def test_access_and_application_lines_are_json(serve: Callable[..., Server]) -> None:
    server = serve("hook_raises", "--log-format", "json")
    given = httpx.post(server.url + PREDICT, json={"raise": "predict"}, headers={"X-Request-Id": "abc-123"})
    assert given.status_code == 500 and given.headers["x-request-id"] == "abc-123"
    assert "(request abc-123)" in given.json()["error"]
    made = httpx.post(server.url + PREDICT, json={"x": 1})
    rid = made.headers["x-request-id"]
    assert made.status_code == 200 and rid
    assert httpx.get(server.url + "/").headers["x-request-id"]  # every answer carries one
    assert httpx.get(server.url + "/nowhere").headers["x-request-id"]

    def access_lines() -> list[dict[str, Any]] | None:
        found = [line for line in json_lines(server) if line["logger"] == "kingpost.access"]
        complete = len({line["request_id"] for line in found} & {"abc-123", rid}) == 2 and \
            any(line["status"] == 404 for line in found)
        return found if complete else None

    access = server.wait_until(access_lines, "the access lines", 5)
    lines = json_lines(server)
    assert lines[0]["message"].startswith("kingpost: serving hook-raises on http://")  # the banner too
    by_id = {line["request_id"]: line for line in access}
    failed, ok = by_id["abc-123"], by_id[rid]
    assert set(failed) >= ACCESS and set(ok) >= ACCESS
    assert (failed["route"], failed["status"], failed["method"], failed["path"]) == ("predict", 500, "POST", PREDICT)
    assert (ok["route"], ok["status"], ok["model"]) == ("predict", 200, "hook-raises")
    assert isinstance(ok["duration_ms"], float) and ok["duration_ms"] >= 0
    assert ok["client"].startswith("127.0.0.1:") and ok["time"].endswith("Z") and ok["level"] == "INFO"
    assert any(line["route"] == "liveness" and line["status"] == 200 for line in access)
    assert any(line["route"] is None and line["status"] == 404 for line in access)

    errors = [line for line in lines if line["level"] == "ERROR"]
    assert errors, lines
    error = errors[0]
    assert set(error) >= FIELDS and error["request_id"] == "abc-123" and error["model"] == "hook-raises"
    # the traceback stays inside the one JSON line (kingpost logs it redacted, in the message)
    assert error["logger"] == "kingpost.server" and "Traceback" in error["message"] + error.get("exception", "")


def test_text_stays_the_default(serve: Callable[..., Server]) -> None:
    server = serve("echo")
    answer = httpx.post(server.url + PREDICT, json=[1])
    assert "x-request-id" not in answer.headers  # request ids come with the JSON logs (no cost otherwise)
    line = server.wait_for_stderr(r'"POST /v1/models/model:predict" 200', 5)[0]
    assert not line.startswith("{")


def test_log_format_from_the_environment(serve: Callable[..., Server]) -> None:
    server = serve("echo", env={"KINGPOST_LOG_FORMAT": "json"})
    httpx.post(server.url + PREDICT, json=[1], headers={"X-Request-Id": "from-env"})
    server.wait_until(lambda: any(line.get("request_id") == "from-env" for line in json_lines(server)),
                      "a JSON access line", 5)
