"""Generator pre/postprocess, setup_environment and the environment/config/data_dir kwargs,
streaming_read_timeout, /ping and /invocations, errors with a status_code and Truss's error headers."""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import pytest
from compat_suite import kingpost_only, load_compat, served  # noqa: F401 - fixtures are found by name

PREDICT = "/v1/models/model:predict"


def test_generator_postprocess_streams_outside_the_lock(served):
    """Truss's test_streaming_postprocess: two requests whose postprocess takes 1 s each finish
    within 1.8 s, so postprocess does not hold the predict lock."""
    url = served("generator_postprocess").url

    def call() -> bytes:
        with httpx.stream("POST", url + PREDICT, json={}, timeout=10) as r:
            assert r.status_code == 200
            return r.read()

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        start = time.monotonic()
        results = list(pool.map(lambda _: call(), range(2)))
        elapsed = time.monotonic() - start
    assert results == [b"0 modified1 modified"] * 2
    assert elapsed < 1.8, elapsed


def test_generator_preprocess_feeds_predict(served):
    r = httpx.post(served("generator_preprocess").url + PREDICT, json={"nums": ["1", "2"]})
    assert (r.status_code, r.json()) == (200, ["1", "2"])


@kingpost_only
def test_generator_hooks_in_process(load_compat):
    assert load_compat("generator_preprocess").predict({"nums": ["3"]}) == ["3"]
    assert "".join(load_compat("generator_postprocess").predict({})) == "0 modified1 modified"


@pytest.fixture(scope="module")
def dynamic_config(tmp_path_factory):
    directory = tmp_path_factory.mktemp("b10_dynamic_config")
    (directory / "environment").write_text(json.dumps({"name": "staging"}))
    return directory


@kingpost_only
def test_environment_config_and_data_dir(served, dynamic_config):
    server = served("environment", KINGPOST_DYNAMIC_CONFIG_DIR=str(dynamic_config), KINGPOST_ENVIRONMENT_POLL_S="0.2")
    seen = httpx.post(server.url + PREDICT, json={}).json()
    assert seen["init_environment"] == {"name": "staging"}
    assert seen["environment_at_load"] == {"name": "staging"}
    assert seen["live_reload"] is False and seen["predict_concurrency"] == 2
    assert seen["streaming_read_timeout"] == 60 and seen["memory"] == "2Gi" and seen["model_name"] == "environment"
    assert seen["data_dir_absolute"] and seen["data_dir_exists"]
    (dynamic_config / "environment").write_text(json.dumps({"name": "production"}))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        calls = httpx.post(server.url + PREDICT, json={}).json()["setup_calls"]
        if calls[-1] == {"name": "production"}:
            break
        time.sleep(0.1)
    assert calls == [{"name": "staging"}, {"name": "production"}]


@kingpost_only
def test_no_environment_file_means_none(load_compat, monkeypatch, tmp_path):
    monkeypatch.setenv("KINGPOST_DYNAMIC_CONFIG_DIR", str(tmp_path))
    seen = load_compat("environment").predict({})
    assert seen["init_environment"] is None and seen["setup_calls"] == []


def test_stalled_stream_is_cut(served):
    url = served("stream_stall").url
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("POST", url + PREDICT, json={}, timeout=10) as r:
        assert r.status_code == 200
        for _ in r.iter_bytes():
            pass


@kingpost_only
def test_stalled_stream_is_logged(served):
    server = served("stream_stall")
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("POST", server.url + PREDICT, json={}) as r:
        r.read()
    assert "runtime.streaming_read_timeout" in server.stderr()


def test_ping_and_invocations(served):
    url = served("openai_counts").url
    ping = httpx.get(url + "/ping")
    assert (ping.status_code, ping.json()) == (200, {})
    assert httpx.get(url + "/v1/models/model/loaded").status_code == 200
    r = httpx.post(url + "/invocations", json={"increment": 0})
    assert r.status_code == 200 and isinstance(r.json(), int)


def test_model_errors_carry_truss_headers(served):
    r = httpx.post(served("status_errors").url + PREDICT, json={"kind": "value"})
    assert r.status_code == 500 and "error" in r.json()
    assert (r.headers["x-baseten-error-source"], r.headers["x-baseten-error-code"]) == ("04", "600")


@pytest.mark.parametrize(("kind", "status", "message"), [("http500", 500, "My custom message."),
                                                          ("http503", 503, "Busy warming the cache."),
                                                          ("http404", 404, "No such item.")])
def test_status_code_exceptions_keep_status_and_message(served, kind, status, message):
    r = httpx.post(served("status_errors").url + PREDICT, json={"kind": kind})
    assert r.status_code == status
    assert message in r.json()["error"]
    assert (r.headers["x-baseten-error-source"], r.headers["x-baseten-error-code"]) == ("04", "600")


def test_bad_json_is_a_client_error(served):
    r = httpx.post(served("status_errors").url + PREDICT, content=b"{nope",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.headers["x-baseten-error-code"] == "700"


@kingpost_only  # starts kingpost's server on a bundle of its own
def test_loading_answers_carry_truss_headers(tmp_path):
    """While load() runs, readiness and /ping answer 503 with Truss's downstream-error headers."""
    from serving import start

    bundle = tmp_path / "slow-load"
    (bundle / "model").mkdir(parents=True)
    (bundle / "config.yaml").write_text("model_name: slow-load\n")
    (bundle / "model" / "model.py").write_text(
        "import time\n\nclass Model:\n    def load(self):\n        time.sleep(30)\n\n"
        "    def predict(self, x):\n        return x\n")
    server = start(bundle, wait="live", stderr_dir=tmp_path)
    try:
        for path in ("/v1/models/model", "/ping"):
            r = httpx.get(server.url + path)
            assert r.status_code == 503, path
            assert (r.headers["x-baseten-error-source"], r.headers["x-baseten-error-code"]) == ("04", "600")
    finally:
        server.stop()
