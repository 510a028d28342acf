"""API keys against a real server: every route in the table asks for one unless it is public."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgpack
import pytest

from conftest import bundle_path
from serving import Server

KEY = "kp-test-7f3a9c1e5b"
FORMS = [{"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Api-Key {KEY}"}, {"X-API-Key": KEY},
         {"authorization": f"bearer {KEY}"}]


def table() -> list[dict[str, object]]:
    """The app's route table, as data: a route another issue adds shows up here and is tested."""
    from kingpost.config import load_config
    from kingpost.runtime import Runtime
    from kingpost.server.app import App
    from kingpost.server.auth import ApiKeys
    from kingpost.server.routes import describe

    bundle = bundle_path("echo")
    app = App(Runtime(bundle, load_config(bundle)), api_keys=ApiKeys([KEY]))
    return describe(app.routes())


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: "1" if m.group(1) == "version" else "model", path)


def request(server: Server, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    if method == "POST":
        if path.endswith(":predict_binary"):
            return httpx.post(server.url + path, content=msgpack.packb([1]), timeout=10,
                              headers={**headers, "Content-Type": "application/octet-stream"})
        return httpx.post(server.url + path, json=[1], headers=headers, timeout=10)
    return httpx.request(method, server.url + path, headers=headers, timeout=10)


def test_every_route_but_probes_needs_a_key_in_any_of_the_three_forms(serve: Callable[..., Server]) -> None:
    server = serve("echo", "--api-key", KEY, "--log-format", "json")
    # The repository routes last: with a key, "unload" does unload the model.
    routes = sorted((r for r in table() if not r["websocket"]), key=lambda r: "repository" in str(r["name"]))
    assert {r["name"] for r in routes if r["public"]} == {"liveness", "readiness", "v2_live", "v2_ready",
                                                          "v2_model_ready", "ping", "loaded"}
    assert len(routes) > 10
    for route in routes:
        path = concrete(str(route["path"]))
        method = next(m for m in route["methods"] if m != "HEAD")  # type: ignore[attr-defined]
        bare = request(server, method, path, {})
        if route["public"]:
            assert bare.status_code == 200, (path, bare.text)
            continue
        assert bare.status_code == 401, (path, bare.text)
        assert bare.headers["www-authenticate"].startswith("Bearer")
        assert "API key" in bare.json()["error"]
        wrong = request(server, method, path, {"X-API-Key": KEY + "x"})
        assert wrong.status_code == 401 and wrong.json() == {"error": "the API key sent is not valid for this server."}
        for form in FORMS:  # past the door; a route may still refuse what it was sent (a V2 infer wants tensors)
            answer = request(server, method, path, form)
            assert answer.status_code != 401, (path, form, answer.text)
            if route["name"] in ("predict", "metrics", "openapi", "v2_metadata", "v2_model"):
                assert answer.status_code == 200, (path, form, answer.text)
    # predict answers the right thing with a key
    assert httpx.post(server.url + "/v1/models/model:predict", json={"a": 1}, headers=FORMS[0]).json() == {"a": 1}
    time.sleep(0.05)  # the access log is written in batches, at most 10 ms apart
    assert "401" in server.stderr() and KEY not in server.stderr()  # requests logged, keys never


def test_the_jobs_routes_ask_for_keys(serve: Callable[..., Server], tmp_path: Path) -> None:
    server = serve("echo", "--api-key", KEY, "--jobs-dir", str(tmp_path / "jobs"),
                   env={"KINGPOST_JOBS_POLL_S": "0.1"})
    submit = "/v1/models/model:async_predict"
    assert httpx.post(server.url + submit, json={"model_input": [3]}).status_code == 401
    made = httpx.post(server.url + submit, json={"model_input": [3]}, headers={"X-API-Key": KEY})
    assert made.status_code == 201, made.text
    job = made.json()["request_id"]
    for path in (f"/v1/jobs/{job}", "/v1/jobs", f"/async_request/{job}"):
        assert httpx.get(server.url + path).status_code == 401, path
        assert httpx.get(server.url + path, headers={"Authorization": f"Api-Key {KEY}"}).status_code == 200, path
    # Prefer: respond-async on the predict route goes through the same door
    assert httpx.post(server.url + "/v1/models/model:predict", json=[1],
                      headers={"Prefer": "respond-async"}).status_code == 401


@pytest.mark.parametrize("wrong", ["Bearer", "Basic " + KEY, "Bearer x" + KEY, KEY])
def test_malformed_authorization_is_401(serve: Callable[..., Server], wrong: str) -> None:
    server = serve("echo", "--api-key", KEY)
    answer = httpx.post(server.url + "/v1/models/model:predict", json=[1], headers={"Authorization": wrong})
    assert answer.status_code == 401


def test_without_keys_nothing_is_asked(serve: Callable[..., Server]) -> None:
    server = serve("echo")
    assert httpx.post(server.url + "/v1/models/model:predict", json=[1]).json() == [1]
    assert httpx.get(server.url + "/metrics").status_code == 200


def test_metrics_public(serve: Callable[..., Server]) -> None:
    server = serve("echo", "--api-key", KEY, "--metrics-public")
    assert httpx.get(server.url + "/metrics").status_code == 200
    assert httpx.get(server.url + "/openapi.json").status_code == 401
    assert httpx.post(server.url + "/v1/models/model:predict", json=[1]).status_code == 401
    # a refused request is counted, by route and status
    assert 'kingpost_requests_total{route="predict",status="401"} 1' in httpx.get(server.url + "/metrics").text


def test_keys_from_env_file_and_secrets_dir(serve: Callable[..., Server], tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# one key a line\nfrom-file-1\n\nfrom-file-2\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "kingpost_api_keys").write_text("from-secrets\n")
    server = serve("echo", "--api-key-file", str(keys), "--secrets-dir", str(secrets),
                   env={"KINGPOST_API_KEY": "from-env"})
    for key in ("from-file-1", "from-file-2", "from-secrets", "from-env"):
        assert httpx.post(server.url + "/v1/models/model:predict", json=[1], headers={"X-API-Key": key}).json() == [1]
    assert httpx.post(server.url + "/v1/models/model:predict", json=[1],
                      headers={"X-API-Key": "# one key a line"}).status_code == 401


def test_an_empty_key_file_is_one_sentence(tmp_path: Path) -> None:
    import subprocess
    import sys

    empty = tmp_path / "keys"
    empty.write_text("# nothing\n")
    result = subprocess.run([sys.executable, "-m", "kingpost", "serve", str(bundle_path("echo")), "--port", "0",
                             "--api-key-file", str(empty)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert result.stderr.strip() == f"error: --api-key-file {empty}: expected one API key a line, found none."


def test_a_websocket_route_is_refused_without_a_key(serve: Callable[..., Server]) -> None:
    """Truss's /v1/websocket, with the websockets client: the handshake is a 401 without a key."""
    import websockets
    from websockets.exceptions import InvalidStatus

    bundle = Path(__file__).parent / "truss_compat" / "bundles" / "websocket"
    server = serve(bundle, "--api-key", KEY)
    url = server.url.replace("http://", "ws://") + "/v1/websocket"

    async def talk(headers: dict[str, str]) -> str:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
            await ws.send("ping")
            return str(await asyncio.wait_for(ws.recv(), 10))

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(talk({}))
    assert refused.value.response.status_code == 401
    for form in FORMS[:3]:
        assert asyncio.run(talk(form)) == "ping pong"


@pytest.mark.ray
@pytest.mark.slow  # importing Ray Serve alone takes ~10 s here
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own imports, under filterwarnings=error
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='needs Ray Serve: pip install "kingpost[ray]"')
def test_the_ray_replica_app_asks_for_keys_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app a Serve replica hands to Serve's proxy (no cluster needed to build and drive it)."""
    import types

    from kingpost.config import load_config
    from kingpost.deploy._replica import KingpostReplica
    from kingpost.runtime import Runtime

    monkeypatch.setenv("KINGPOST_API_KEY", KEY)  # a replica reads it from its own environment
    bundle = bundle_path("echo")
    runtime = Runtime(bundle, load_config(bundle))
    replica = types.SimpleNamespace(_runtime=runtime, _settings=None, _secrets_dir=str(tmp_path))
    asgi = KingpostReplica.__serve_build_asgi_app__(replica)

    async def call(headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
        await runtime.start()
        sent: list[dict[str, object]] = []

        messages = [{"type": "http.request", "body": b"[7]", "more_body": False}]

        async def receive() -> dict[str, object]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client stays: the next message would be its disconnect
            raise AssertionError("unreachable")

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/models/model:predict", "root_path": "",
                 "headers": [(b"content-type", b"application/json"), *headers]}
        await asgi(scope, receive, send)
        await runtime.stop()
        return sent[0]["status"], sent[1]["body"]  # type: ignore[return-value]

    assert asyncio.run(call([]))[0] == 401
    runtime = Runtime(bundle, load_config(bundle))
    replica._runtime = runtime
    asgi = KingpostReplica.__serve_build_asgi_app__(replica)
    assert asyncio.run(call([(b"x-api-key", KEY.encode())])) == (200, b"[7]")
