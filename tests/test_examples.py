"""The example gallery: each bundle in examples/ does what its README promises.

In process through ``kingpost.load``, and over HTTP through a real ``kingpost serve`` subprocess.
Nothing here trains anything heavy: the digits and xgboost weights are committed.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import importlib.util
import io
import json
import math
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest

import kingpost

np = pytest.importorskip("numpy")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DIGITS = EXAMPLES / "digits"
TABULAR = EXAMPLES / "tabular-xgboost"
STREAMING = EXAMPLES / "streaming-text"


def _import(path: Path) -> ModuleType:
    """Import a file that is not on sys.path (an example's train.py or model.py)."""
    name = "_example_" + re.sub(r"\W", "_", str(path.relative_to(EXAMPLES).with_suffix("")))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a real image host for the digits URL path -----------------------------------------------------


class _Route(NamedTuple):
    content_type: str
    body: bytes
    sized: bool = True  # False leaves out Content-Length: only counting the bytes read catches a big body
    delay_s: float = 0  # before the status line
    pace_s: float = 0  # between single bytes of the body: a trickle


class _Routes(http.server.BaseHTTPRequestHandler):
    """Serves ``self.server.routes[path]``, a :class:`_Route`, over HTTP/1.0."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path)  # type: ignore[attr-defined]
        if route is None:
            self.send_error(404)
            return
        time.sleep(route.delay_s)
        self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        if route.sized:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()  # unsized: the body ends when the connection closes
        step = 1 if route.pace_s else 65536
        with contextlib.suppress(OSError):  # the model may hang up once it has seen enough
            for start in range(0, len(route.body), step):
                self.wfile.write(route.body[start : start + step])
                if route.pace_s:
                    self.wfile.flush()
                    time.sleep(route.pace_s)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ImageHost(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up early is the point of some tests


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    pil = pytest.importorskip("PIL.Image")
    huge = io.BytesIO()
    pil.new("L", (5000, 5000), 255).save(huge, format="PNG")
    junk = bytes(range(256)) * (3_000_000 // 256)
    server = _ImageHost(("127.0.0.1", 0), _Routes)
    seven = (DIGITS / "samples" / "seven.png").read_bytes()
    server.routes = {  # type: ignore[attr-defined]
        "/seven.png": _Route("image/png", seven),
        "/page.html": _Route("text/html", b"<html><body>Not here.</body></html>"),
        "/big.png": _Route("image/png", junk),
        "/big-unsized.png": _Route("image/png", junk, sized=False),
        "/huge.png": _Route("image/png", huge.getvalue()),
        "/slow.png": _Route("image/png", seven, delay_s=3),
        "/trickle.png": _Route("image/png", seven, sized=False, pace_s=0.05),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- digits ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Iterator[kingpost.Bundle]:
    pytest.importorskip("PIL")
    bundle = kingpost.load(DIGITS)
    yield bundle
    bundle.close()


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _top3_ok(result: Any, expected: str) -> None:
    assert isinstance(result, dict) and len(result) == 3
    assert next(iter(result)) == expected, result
    assert all(isinstance(p, float) and 0 <= p <= 100 for p in result.values())
    assert list(result.values()) == sorted(result.values(), reverse=True)


def test_digits_weights_score_on_the_held_out_split() -> None:
    pytest.importorskip("sklearn")
    train = _import(DIGITS / "train.py")
    _, x_test, _, y_test = train.held_out_split()
    model_module = _import(DIGITS / "model" / "model.py")
    model = model_module.Model(config={}, data_dir=DIGITS / "data")
    model.load()
    # The numpy forward pass on load_digits' own 8x8 grids: no image handling involved.
    accuracy = float(np.mean(model.predict(x_test).argmax(axis=1) == y_test))
    assert accuracy >= 0.95


def test_digits_through_pictures_of_the_held_out_split(digits: kingpost.Bundle) -> None:
    pytest.importorskip("sklearn")
    train = _import(DIGITS / "train.py")
    _, x_test, _, y_test = train.held_out_split()
    correct = 0
    for i, (features, label) in enumerate(zip(x_test, y_test, strict=True)):
        # 64x64 smooth PNGs, dark ink on white for most, light on dark for every third.
        png = train.sample_png(features, dark_on_light=i % 3 != 0)
        correct += next(iter(digits.predict({"image": _b64(png)}))) == str(label)
    assert correct / len(y_test) >= 0.9


def test_digits_example_seven(digits: kingpost.Bundle) -> None:
    _top3_ok(digits.predict(example="seven"), "7")
    _top3_ok(digits.predict(example="four_light_on_dark"), "4")


def test_digits_from_base64_data_url_and_jpeg(digits: kingpost.Bundle) -> None:
    from PIL import Image

    png = (DIGITS / "samples" / "seven.png").read_bytes()
    _top3_ok(digits.predict({"image": _b64(png)}), "7")
    _top3_ok(digits.predict({"image": "data:image/png;base64," + _b64(png)}), "7")
    wrapped = "\n".join(_b64(png)[i : i + 76] for i in range(0, len(_b64(png)), 76))  # as `base64` writes it
    _top3_ok(digits.predict({"image": wrapped}), "7")
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(jpeg, format="JPEG", quality=80)
    _top3_ok(digits.predict({"image": _b64(jpeg.getvalue())}), "7")


def test_digits_from_a_url(digits: kingpost.Bundle, image_host: str) -> None:
    _top3_ok(digits.predict({"url": f"{image_host}/seven.png"}), "7")


def test_digits_transparent_drawing_on_a_large_canvas(digits: kingpost.Bundle) -> None:
    """An RGBA PNG with a transparent (black, alpha 0) background and a small digit off-centre."""
    pytest.importorskip("sklearn")
    from PIL import Image

    train = _import(DIGITS / "train.py")
    _, x_test, _, y_test = train.held_out_split()
    index = int(np.flatnonzero(y_test == 7)[0])
    ink = Image.open(io.BytesIO(train.sample_png(x_test[index], dark_on_light=False)))
    canvas = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    canvas.paste(Image.new("RGBA", ink.size, (0, 0, 120, 255)), (200, 20), mask=ink)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    _top3_ok(digits.predict({"image": _b64(buffer.getvalue())}), "7")


USAGE = 'Send a JSON object with exactly one of "url"'


@pytest.mark.parametrize(
    ("model_input", "sentence"),
    [
        ({}, USAGE),
        ({"url": "http://x/a.png", "image": "aGk="}, USAGE),
        ([1, 2], USAGE),
        (
            {"url": "ftp://example.com/a.png"},
            "\"url\" must be an http or https address, got 'ftp://example.com/a.png'.",
        ),
        ({"url": "not a url"}, '"url" must be an http or https address'),
        ({"image": "!!!"}, '"image" is not valid base64.'),
        ({"image": 42}, '"image" must be a base64 string, got int.'),
        ({"image": base64.b64encode(b"GIF? no, plain text").decode()}, 'The "image" data is not a PNG'),
        ({"image": "A" * 3_000_000}, 'The "image" is larger than the 2000000 byte limit.'),
    ],
)
def test_digits_bad_input_is_one_sentence(digits: kingpost.Bundle, model_input: Any, sentence: str) -> None:
    with pytest.raises(kingpost.InputError, match=re.escape(sentence)):
        digits.predict(model_input)


def test_digits_bad_urls_are_input_errors(digits: kingpost.Bundle, image_host: str) -> None:
    closed = f"http://127.0.0.1:{_free_port()}/seven.png"
    cases = {
        closed: f"Could not fetch {closed}: ",  # nothing listens there
        f"{image_host}/page.html": f"The response from {image_host}/page.html (text/html) is not a PNG",
        f"{image_host}/nope.png": f"Fetching {image_host}/nope.png failed with HTTP 404",
        f"{image_host}/big.png": f"The image at {image_host}/big.png is larger than the 2000000 byte limit.",
        f"{image_host}/big-unsized.png": "is larger than the 2000000 byte limit.",
        f"{image_host}/huge.png": "The image is 5000x5000 pixels; the limit is 16777216 pixels.",
    }
    for url, sentence in cases.items():
        with pytest.raises(kingpost.InputError, match=re.escape(sentence)):
            digits.predict({"url": url})


def test_digits_limits_come_from_config(tmp_path: Path, image_host: str) -> None:
    pytest.importorskip("PIL")
    bundle_dir = shutil.copytree(DIGITS, tmp_path / "digits")
    config = (bundle_dir / "config.yaml").read_text()
    config = config.replace("fetch_timeout_s: 5", "fetch_timeout_s: 0.3")
    config = config.replace("max_image_bytes: 2000000", "max_image_bytes: 1000")
    (bundle_dir / "config.yaml").write_text(config)
    bundle = kingpost.load(bundle_dir)
    try:
        with pytest.raises(kingpost.InputError, match="larger than the 1000 byte limit"):
            bundle.predict({"url": f"{image_host}/seven.png"})
        started = time.monotonic()
        with pytest.raises(kingpost.InputError, match=re.escape(f"Could not fetch {image_host}/slow.png: ")):
            bundle.predict({"url": f"{image_host}/slow.png"})
        assert time.monotonic() - started < 2.5  # the host answers only after 3 s
        started = time.monotonic()
        with pytest.raises(kingpost.InputError, match=re.escape("took longer than 0.3 s.")):
            bundle.predict({"url": f"{image_host}/trickle.png"})  # each byte in time, the whole too slow
        assert time.monotonic() - started < 2.5
    finally:
        bundle.close()


# -- tabular xgboost ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tabular() -> Iterator[kingpost.Bundle]:
    pytest.importorskip("xgboost")
    bundle = kingpost.load(TABULAR)
    yield bundle
    bundle.close()


@pytest.fixture(scope="module")
def booster() -> Any:
    xgboost = pytest.importorskip("xgboost")
    return xgboost.Booster(model_file=str(TABULAR / "data" / "model.json"))


def _expected(booster: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the bundle should answer, computed straight from xgboost on a hand-built matrix."""
    import xgboost

    names = booster.feature_names
    rows = [[math.nan if r.get(n) is None else r[n] for n in names] for r in records]
    p = booster.predict(xgboost.DMatrix(np.array(rows, dtype=np.float32), feature_names=names))
    labels = json.loads(booster.attr("labels"))
    return [{"label": labels[int(pi >= 0.5)], "probability": round(float(max(pi, 1 - pi)), 4)} for pi in p]


def test_tabular_matches_xgboost(tabular: kingpost.Bundle, booster: Any) -> None:
    records = tabular.examples()["two_patients"]["records"]
    shuffled = [dict(reversed(list(r.items()))) for r in records]  # field order must not matter
    result = tabular.predict({"records": shuffled})
    assert result == {"predictions": _expected(booster, records)}
    assert [p["label"] for p in result["predictions"]] == ["malignant", "benign"]


def test_tabular_missing_features_are_nan(tabular: kingpost.Bundle, booster: Any) -> None:
    partial = tabular.examples()["worst_only"]["records"]
    assert len(partial[0]) == 10
    with_null = [{**partial[0], "mean radius": None}]
    assert tabular.predict({"records": partial}) == {"predictions": _expected(booster, partial)}
    assert tabular.predict({"records": with_null}) == {"predictions": _expected(booster, partial)}


@pytest.mark.parametrize(
    ("model_input", "sentence"),
    [
        (
            {"records": [{"mean radius": 14.0}, {"mean_radius": 14.0, "colour": 3}]},
            "Record 1 has unknown features 'mean_radius' (did you mean 'mean radius'?), 'colour'.",
        ),
        (
            {"records": [{"mean radius": 14.0}, {"mean radius": "14.0"}]},
            "Record 1, feature 'mean radius': expected a number or null, got '14.0'.",
        ),
        ({"records": [{"mean radius": True}]}, "Record 0, feature 'mean radius': expected a number or null"),
        ({"records": [{}]}, "Record 0 is empty; send at least one feature."),
        ({"records": [[14.0]]}, "Record 0 must be a JSON object of feature name -> number."),
        ({"records": []}, 'Send {"records": '),
        ({"rows": []}, 'Send {"records": '),
    ],
)
def test_tabular_bad_input_is_one_sentence(tabular: kingpost.Bundle, model_input: Any, sentence: str) -> None:
    with pytest.raises(kingpost.InputError, match=re.escape(sentence)):
        tabular.predict(model_input)


def test_tabular_train_py_reproduces_the_shipped_model(tmp_path: Path, booster: Any) -> None:
    pytest.importorskip("sklearn")
    import xgboost

    train = _import(TABULAR / "train.py")
    train.MODEL, train.EXAMPLES = tmp_path / "model.json", tmp_path / "examples.yaml"
    train.main()
    retrained = xgboost.Booster(model_file=str(train.MODEL))
    names, _, _, x_test, _, _ = train.dataset()
    test = xgboost.DMatrix(x_test, feature_names=names)
    np.testing.assert_array_equal(retrained.predict(test), booster.predict(test))
    assert train.EXAMPLES.read_text() == (TABULAR / "examples.yaml").read_text()


# -- streaming text -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streaming() -> Iterator[kingpost.Bundle]:
    bundle = kingpost.load(STREAMING)
    yield bundle
    bundle.close()


def test_streaming_yields_tokens(streaming: kingpost.Bundle) -> None:
    chunks = list(streaming.predict({"prompt": "Call me", "max_tokens": 8, "seed": 0}))
    assert len(chunks) == 8
    assert all(isinstance(c, str) and c for c in chunks)
    assert streaming.streams


def test_streaming_same_seed_same_text(streaming: kingpost.Bundle) -> None:
    def text(seed: int) -> str:
        return "".join(streaming.predict({"prompt": "the ocean", "max_tokens": 5, "seed": seed}))

    assert text(3) == text(3)
    assert text(3) != text(4)


@pytest.mark.parametrize(
    ("model_input", "sentence"),
    [
        ({"max_tokens": 5}, 'Send {"prompt": '),
        ({"prompt": "x", "max_tokens": 0}, '"max_tokens" must be an integer from 1 to 200, got 0.'),
        ({"prompt": "x", "max_tokens": "5"}, '"max_tokens" must be an integer from 1 to 200'),
        ({"prompt": "x", "seed": 1.5}, '"seed" must be an integer or null, got 1.5.'),
        ({"prompt": "x", "temperature": 1}, "Unknown fields 'temperature'; expected prompt, max_tokens, seed."),
    ],
)
def test_streaming_bad_input_is_one_sentence(streaming: kingpost.Bundle, model_input: Any, sentence: str) -> None:
    with pytest.raises(kingpost.InputError, match=re.escape(sentence)):
        streaming.predict(model_input)


# -- over HTTP: kingpost serve in a subprocess ----------------------------------------------------


class _Server:
    """``kingpost serve BUNDLE`` on a free 127.0.0.1 port, as a subprocess stopped by its PID."""

    def __init__(self, bundle_dir: Path, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        command = [
            sys.executable,
            "-m",
            "kingpost",
            "serve",
            str(bundle_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self.client: Any = None

    def ready(self, timeout: float = 60) -> Any:
        """Wait for GET /v1/models/model to answer 200; return an httpx client for the server."""
        import httpx

        if self.client is None:
            client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
            deadline = time.monotonic() + timeout
            while True:
                if self.process.poll() is not None:
                    client.close()
                    pytest.fail(f"kingpost serve exited with {self.process.returncode}:\n{self.log.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/v1/models/model").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    client.close()
                    pytest.fail(f"kingpost serve was not ready within {timeout:g} s:\n{self.log.read_text()}")
                time.sleep(0.1)
            self.client = client
        return self.client

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.process.terminate()  # SIGTERM: the server drains, then exits
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, _Server]]:
    """One server per example, all started at once so their (slow) imports overlap."""
    pytest.importorskip("httpx")
    pytest.importorskip("PIL")
    pytest.importorskip("xgboost")
    logs = tmp_path_factory.mktemp("serve-logs")
    started: dict[str, _Server] = {}
    try:
        for bundle_dir in (DIGITS, TABULAR, STREAMING):
            started[bundle_dir.name] = _Server(bundle_dir, logs / f"{bundle_dir.name}.log")
        yield started
    finally:
        for server in started.values():
            server.stop()


PREDICT = "/v1/models/model:predict"


def test_http_digits(servers: dict[str, _Server], image_host: str) -> None:
    client = servers["digits"].ready()
    png = (DIGITS / "samples" / "seven.png").read_bytes()
    for body in ({"image": _b64(png)}, {"url": f"{image_host}/seven.png"}):
        response = client.post(PREDICT, json=body)
        assert response.status_code == 200, response.text
        _top3_ok(response.json(), "7")
    for body, sentence in [
        ({}, USAGE),
        ({"url": f"{image_host}/page.html"}, "is not a PNG, JPEG, GIF, BMP or WebP image."),
        ({"url": f"{image_host}/huge.png"}, "The image is 5000x5000 pixels"),
    ]:
        response = client.post(PREDICT, json=body)
        assert response.status_code == 400, response.text
        assert set(response.json()) == {"error"} and sentence in response.json()["error"]


def test_http_tabular(servers: dict[str, _Server], tabular: kingpost.Bundle, booster: Any) -> None:
    records = tabular.examples()["two_patients"]["records"]
    client = servers["tabular-xgboost"].ready()
    response = client.post(PREDICT, json={"records": records})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": _expected(booster, records)}
    response = client.post(PREDICT, json={"records": [{"mean_radius": 14.0}]})
    assert response.status_code == 400
    assert response.json() == {"error": "Record 0 has unknown features 'mean_radius' (did you mean 'mean radius'?)."}


def test_http_streaming(servers: dict[str, _Server], streaming: kingpost.Bundle) -> None:
    body = {"prompt": "Call me", "max_tokens": 6, "seed": 0}
    expected = "".join(streaming.predict(body))
    client = servers["streaming-text"].ready()
    with client.stream("POST", PREDICT, json=body) as response:
        assert response.status_code == 200
        assert "".join(response.iter_text()) == expected
    with client.stream("POST", PREDICT, json=body, headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data:").removeprefix(" ") for line in response.iter_lines() if line]
        assert "".join(events) == expected and len(events) == 6  # one event per token
    response = client.post(PREDICT, json=body, headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.json() == expected  # gathered into one string
    response = client.post(PREDICT, json={"prompt": "x", "max_tokens": 0})
    assert response.status_code == 400
    assert response.json() == {"error": '"max_tokens" must be an integer from 1 to 200, got 0.'}
