"""CORS against a real server: off by default, preflights answered before keys and model, headers by origin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from serving import Server

PREDICT = "/v1/models/model:predict"
SITE = "https://app.example"


def preflight(server: Server, origin: str, method: str = "POST", headers: str = "content-type") -> httpx.Response:
    return httpx.options(server.url + PREDICT, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                                        "Access-Control-Request-Headers": headers})


def test_off_by_default(serve: Callable[..., Server]) -> None:
    server = serve("echo")
    answer = httpx.post(server.url + PREDICT, json=[1], headers={"Origin": SITE})
    assert answer.status_code == 200 and not any(h.startswith("access-control-") for h in answer.headers)
    assert preflight(server, SITE).status_code == 405  # no CORS: OPTIONS is just a method predict lacks


def test_preflight_and_simple_requests(serve: Callable[..., Server]) -> None:
    server = serve("echo", "--cors-origin", SITE, "--cors-max-age", "120", "--api-key", "k1")
    ok = preflight(server, SITE, headers="authorization, content-type")
    assert ok.status_code == 204  # answered before the key check: a browser sends no key in a preflight
    assert ok.headers["access-control-allow-origin"] == SITE
    assert ok.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert "authorization" in ok.headers["access-control-allow-headers"]
    assert ok.headers["access-control-max-age"] == "120"
    assert ok.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in ok.headers

    refused = preflight(server, "https://evil.example")
    assert refused.status_code == 400 and "origin https://evil.example is not allowed" in refused.json()["error"]
    assert "access-control-allow-origin" not in refused.headers
    assert preflight(server, SITE, method="DELETE").status_code == 400
    assert preflight(server, SITE, headers="x-custom").status_code == 400

    simple = httpx.post(server.url + PREDICT, json=[2], headers={"Origin": SITE, "Authorization": "Bearer k1"})
    assert simple.json() == [2] and simple.headers["access-control-allow-origin"] == SITE
    assert "x-request-id" in simple.headers["access-control-expose-headers"]
    denied = httpx.post(server.url + PREDICT, json=[2], headers={"Origin": SITE})  # a 401 a page can read
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == SITE
    other = httpx.post(server.url + PREDICT, json=[2], headers={"Origin": "https://evil.example",
                                                                "Authorization": "Bearer k1"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


def test_preflight_never_reaches_the_model(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve("cancel_probe", "--cors-origin", "*")
    log = tmp_path / "never"
    answer = httpx.request("OPTIONS", server.url + PREDICT, json={"log": str(log)},
                           headers={"Origin": SITE, "Access-Control-Request-Method": "POST"})
    assert answer.status_code == 204 and answer.headers["access-control-allow-origin"] == "*"
    assert not log.exists()
    assert 'route="predict"' not in httpx.get(server.url + "/metrics").text


def test_settings_from_config_and_flags_override(serve: Callable[..., Server],
                                                 copy_bundle: Callable[..., Path]) -> None:
    bundle = copy_bundle("echo", runtime={"cors": {"allow_origins": [SITE], "allow_credentials": True,
                                                   "allow_methods": ["POST"], "max_age": 30}})
    server = serve(bundle)
    ok = preflight(server, SITE, method="POST")
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert ok.headers["access-control-allow-methods"] == "POST" and ok.headers["access-control-max-age"] == "30"
    server.stop()
    flagged = serve(bundle, "--cors-max-age", "5", "--cors-origin", "https://other.example")
    assert preflight(flagged, SITE).status_code == 400
    assert preflight(flagged, "https://other.example").headers["access-control-max-age"] == "5"


def test_a_bad_cors_config_is_one_sentence(copy_bundle: Callable[..., Path]) -> None:
    import subprocess
    import sys

    bundle = copy_bundle("echo", runtime={"cors": {"max_age": "soon"}})
    result = subprocess.run([sys.executable, "-m", "kingpost", "serve", str(bundle), "--port", "0"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "runtime.cors.max_age" in result.stderr and "soon" in result.stderr
