"""The playground page in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium).

Against ``kingpost serve examples/digits`` and ``examples/streaming-text``: pick an example and run
it, upload a PNG through the file input, watch a stream arrive in steps, see a 400's sentence.
Screenshots land in tmp_path, and in $KINGPOST_SCREENSHOTS when set (the README's comes from there).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving import Server, serving

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="needs Debian's chromium and chromium-driver (see .ci/run)")


@pytest.fixture(scope="module")
def digits() -> Iterator[Server]:
    with serving(EXAMPLES / "digits") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # to read the headers the page sends
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,720", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / name))
    where = os.environ.get("KINGPOST_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(where) / name))


def _wait(check: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _open(driver: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(lambda: driver.find_element(By.ID, "state").text == "ready", "the page to show the model ready")


def _run(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "run").click()
    _wait(lambda: driver.find_element(By.ID, "output").get_attribute("data-done") == "true", "the run to end")


def _shown(answer: dict[str, float]) -> str:
    """How the page's JSON tree shows a flat object: one '"key": value' per line, numbers as JS prints them."""
    return "\n".join(f'"{k}": {int(v) if float(v).is_integer() else v}' for k, v in answer.items())


def test_example_seven_shows_the_top_3(browser: Any, digits: Server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, digits.url + "/")  # a browser at / gets the page; API clients keep the JSON
    assert browser.find_element(By.ID, "name").text == "digits"
    assert "Handwritten digit classifier" in browser.find_element(By.ID, "description").text
    picker = Select(browser.find_element(By.ID, "examples"))
    assert "seven" in [o.text for o in picker.options]
    picker.select_by_visible_text("seven")
    _run(browser)
    expected = httpx.post(digits.url + "/v1/models/model:predict", json=_example("seven"), timeout=30).json()
    assert next(iter(expected)) == "7" and len(expected) == 3
    assert browser.find_element(By.ID, "output").text == _shown(expected)
    status = browser.find_element(By.ID, "status").text
    assert status.startswith("200") and " ms · request pg-" in status
    assert browser.find_element(By.ID, "error").is_displayed() is False
    _shot(browser, tmp_path, "playground-digits.png")


def test_uploading_the_png_gives_the_same_answer(browser: Any, digits: Server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, digits.url + "/playground")
    png = EXAMPLES / "digits" / "samples" / "seven.png"
    browser.find_element(By.ID, "file").send_keys(str(png))
    _wait(lambda: "data:image/png;base64," in browser.find_element(By.ID, "editor").get_attribute("value"),
          "the file to land in the editor as a data URL")
    _run(browser)
    expected = httpx.post(digits.url + "/v1/models/model:predict", timeout=30,
                          json={"image": base64.b64encode(png.read_bytes()).decode()}).json()
    assert next(iter(expected)) == "7"
    assert browser.find_element(By.ID, "output").text == _shown(expected)
    _shot(browser, tmp_path, "playground-upload.png")


def test_a_400_shows_its_sentence(browser: Any, digits: Server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, digits.url + "/playground")
    editor = browser.find_element(By.ID, "editor")
    editor.clear()
    editor.send_keys('{"image": "this is not base64!"}')
    _run(browser)
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert error.text == '"image" is not valid base64.'
    assert browser.find_element(By.ID, "status").text.startswith("400")
    _shot(browser, tmp_path, "playground-400.png")


def test_streamed_text_arrives_in_steps(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with serving(EXAMPLES / "streaming-text") as server:  # 0.05 s between tokens: about 2 s for 40
        _open(browser, server.url + "/")
        Select(browser.find_element(By.ID, "examples")).select_by_visible_text("ishmael")
        browser.find_element(By.ID, "run").click()
        output = browser.find_element(By.ID, "output")
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while output.get_attribute("data-done") != "true" and time.monotonic() < deadline:
            text = output.text
            if text and (not seen or seen[-1] != text):
                seen.append(text)
            time.sleep(0.05)
        final = output.text
        expected = httpx.post(server.url + "/v1/models/model:predict", timeout=30,
                              json={"prompt": "Call me", "max_tokens": 40, "seed": 0},
                              headers={"accept": "application/json"}).json()
        _shot(browser, tmp_path, "playground-stream.png")
    assert final.strip() == expected.strip()  # the whole answer, in order
    partial = [s for s in seen if s != final]
    assert len(partial) >= 2, f"the text did not arrive in steps: {seen!r}"
    assert all(final.startswith(s) for s in partial)  # each step appended to the last
    assert int(output.get_attribute("data-updates")) > 1


def test_docs_serve_swagger_ui_without_a_cdn(browser: Any, digits: Server) -> None:
    from selenium.webdriver.common.by import By

    page = httpx.get(digits.url + "/docs", timeout=10).text
    assert "http" not in page.lower().replace("http-equiv", "")  # no absolute URL: nothing from outside
    browser.get(digits.url + "/docs")
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"), "Swagger UI to list the paths")
    paths = {e.text.replace("\u200b", "") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert "/v1/models/{model_name}:predict" in paths


def test_api_clients_at_root_keep_liveness(digits: Server) -> None:
    assert httpx.get(digits.url + "/", timeout=10).json() == {"status": "ok"}
    page = httpx.get(digits.url + "/", headers={"accept": "text/html,application/xhtml+xml"}, timeout=10)
    assert page.headers["content-type"].startswith("text/html") and "playground" in page.text
    assert len(page.content) + sum(len(httpx.get(f"{digits.url}/playground/static/{n}", timeout=10).content)
                                   for n in ("playground.js", "playground.css")) < 24_000  # the page is small


def test_the_api_key_is_kept_for_the_session_and_sent(browser: Any, digits: Server) -> None:
    import json

    from selenium.webdriver.common.by import By

    _open(browser, digits.url + "/playground")
    key = browser.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys("k-123\t")  # the change event stores it
    browser.refresh()
    _wait(lambda: browser.find_element(By.ID, "api-key").get_attribute("value") == "k-123",
          "the key to come back from sessionStorage")
    browser.get_log("performance")  # drop what came before
    _run(browser)
    sent = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent" and message["params"]["request"]["url"].endswith(
                ":predict"):
            sent.append(message["params"]["request"]["headers"])
    assert sent and sent[-1].get("Authorization") == "Bearer k-123"
    browser.execute_script("sessionStorage.clear()")


def test_a_failed_reload_is_shown(browser: Any, copy_bundle: Any, serve: Any) -> None:
    from selenium.webdriver.common.by import By

    bundle = copy_bundle("reload_probe")
    server = serve(bundle, "--reload")
    _open(browser, server.url + "/")
    model = bundle / "model" / "model.py"
    model.write_text(model.read_text().replace("class Model:", "class Model(:"))
    banner = browser.find_element(By.ID, "reload-error")
    _wait(banner.is_displayed, "the reload error on the page")  # the page polls every 2 s
    assert banner.text == ("The last reload failed; still serving the previous version. "
                           "reload_probe/model/model.py, line 10: syntax error: invalid syntax.")


def _example(name: str) -> Any:
    import yaml

    entries = yaml.safe_load((EXAMPLES / "digits" / "examples.yaml").read_text())
    return next(e["input"] for e in entries if e["name"] == name)


def test_outputs_render_by_what_they_are(browser: Any, serve: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server = serve("render_kinds")
    _open(browser, server.url + "/playground")
    output = browser.find_element(By.ID, "output")

    def run(kind: str) -> None:
        editor = browser.find_element(By.ID, "editor")
        editor.clear()
        editor.send_keys(f'{{"kind": "{kind}"}}')
        _run(browser)

    run("image")  # a data URL answer is an image
    images = output.find_elements(By.CSS_SELECTOR, "img.out")
    assert len(images) == 1 and browser.execute_script("return arguments[0].naturalWidth", images[0]) == 2
    run("base64")  # a bare base64 PNG inside an object too
    assert output.text.startswith('"mask":')
    assert browser.execute_script("return arguments[0].naturalWidth", output.find_element(By.TAG_NAME, "img")) == 2
    run("records")  # a list of records is a table, columns from every record
    assert [th.text for th in output.find_elements(By.TAG_NAME, "th")] == ["label", "score", "note"]
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in output.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert rows == [['"cat"', "0.9", ""], ['"dog"', "0.1", '"unsure"']]
    _shot(browser, tmp_path, "playground-table.png")
    run("nested")  # anything else is a tree
    assert output.text.splitlines() == ['"outer":', "{1}", '"inner":', "[2]", "[0]: 1", "[1]: 2"]


def test_input_schema_is_read_from_the_openapi_description() -> None:
    from kingpost.server.playground import input_schema

    person = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    body = {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/In"}}}}}
    spec = {"paths": {"/v1/models/{model_name}:predict": {"post": body}}, "components": {"schemas": {"In": person}}}
    assert input_schema(spec) == person
    body["requestBody"]["content"]["application/json"]["schema"] = {}
    assert input_schema(spec) is None  # no typed input: the JSON editor only


def test_a_typed_schema_becomes_a_form(browser: Any, tmp_path: Path) -> None:
    """Until bundles publish schemas (issue 13), the App is given one, served in-process on uvicorn."""
    import json
    import threading

    import uvicorn
    from selenium.webdriver.common.by import By

    from conftest import bundle_path
    from kingpost.config import load_config
    from kingpost.runtime import Runtime
    from kingpost.server.app import App

    root = bundle_path("server_echo")
    app = App(Runtime(root, load_config(root)), access_log=False)
    app.playground.schema = {"type": "object", "required": ["prompt"],
                             "properties": {"prompt": {"type": "string"}, "max_tokens": {"type": "integer"},
                                            "greedy": {"type": "boolean"}}}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: server.started, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        _open(browser, f"http://127.0.0.1:{port}/playground")
        form = browser.find_element(By.ID, "form")
        assert form.is_displayed()
        assert [label.text for label in form.find_elements(By.TAG_NAME, "label")] == ["prompt *", "max_tokens",
                                                                                       "greedy"]
        browser.find_element(By.ID, "field-prompt").send_keys("Call me")
        browser.find_element(By.ID, "field-max_tokens").send_keys("12")
        browser.find_element(By.ID, "field-greedy").click()
        assert json.loads(browser.find_element(By.ID, "editor").get_attribute("value")) == {
            "prompt": "Call me", "max_tokens": 12, "greedy": True}
        _run(browser)
        assert '"prompt": "Call me"' in browser.find_element(By.ID, "output").text
        _shot(browser, tmp_path, "playground-form.png")
    finally:
        server.should_exit = True
        thread.join(30)


def test_docs_without_swagger_ui_still_work_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without kingpost[docs], /docs is a packaged page listing the paths (no CDN either)."""
    import asyncio

    from conftest import bundle_path
    from kingpost.config import load_config
    from kingpost.runtime import Runtime
    from kingpost.server import playground
    from kingpost.server.app import App

    monkeypatch.setattr(playground, "_swagger_dir", lambda: None)
    root = bundle_path("echo")
    app = App(Runtime(root, load_config(root)), access_log=False)

    async def get(path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kingpost") as client:
            return await client.get(path)

    page = asyncio.run(get("/docs"))
    assert page.status_code == 200 and "pip install 'kingpost[docs]'" in page.text
    assert "http" not in page.text.lower()
    assert asyncio.run(get("/docs/static/swagger-ui-bundle.js")).status_code == 404
