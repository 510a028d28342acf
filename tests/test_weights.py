"""model_cache / weights / external_data: real downloads from servers on loopback.

A plain ``http.server`` serves files (Range honoured) and a small Hub answers the endpoints
``huggingface_hub`` calls, reached through HF_ENDPOINT. Each test has its own cache directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fileserver import FileServer, HubServer, chunks


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("KINGPOST_CACHE_DIR", str(root))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "KINGPOST_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return root / "weights"


@pytest.fixture(autouse=True)
def app_paths() -> Iterator[list[Path]]:
    """kingpost links fetched files where Truss bundles look (/app/data, /app/model_cache); a test
    removes the links it made. The list names paths a test expects to be made."""
    roots = [Path("/app/data"), Path("/app/model_cache")]
    before = {p for root in roots if root.exists() for p in root.rglob("*")}
    made: list[Path] = []
    yield made
    for root in roots:
        for path in sorted(root.rglob("*") if root.exists() else [], reverse=True):
            if path not in before and path.is_symlink():
                path.unlink()
            elif path not in before and path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _app_writable() -> bool:
    """Whether this user may create Truss's /app/data and /app/model_cache (root here, maybe not in CI)."""
    try:
        for path in (Path("/app/data"), Path("/app/model_cache")):
            path.mkdir(parents=True, exist_ok=True)
        return os.access("/app/data", os.W_OK) and os.access("/app/model_cache", os.W_OK)
    except OSError:
        return False


APP_WRITABLE = _app_writable()
needs_app = pytest.mark.skipif(not APP_WRITABLE, reason="this user cannot create /app/data and /app/model_cache")


def kingpost(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kingpost", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def external(server: FileServer, path: str, local: str, **extra: str) -> dict[str, Any]:
    return {"external_data": [{"url": server.url + path, "local_data_path": local, **extra}]}


def test_a_download_killed_half_way_resumes_where_it_stopped(copy_bundle: Callable[..., Path], cache: Path,
                                                             app_paths: list[Path]) -> None:
    data = chunks(3_000_000, seed=1)
    local = f"kp-{os.getpid()}-resume/w.bin"
    app_paths.append(Path("/app/data") / local)
    with FileServer({"/w.bin": data}) as server:
        bundle = copy_bundle("external_data", **external(server, "/w.bin", local))
        server.hold_after["/w.bin"] = 1_000_000
        proc = subprocess.Popen([sys.executable, "-m", "kingpost", "fetch", str(bundle)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            assert server.served.wait(30), "the server never sent the first part"
            parts = cache / "partial"
            wait_for(lambda: any(p.stat().st_size == 1_000_000 for p in parts.glob("*.part")), "1 MB on disk")
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # killed mid-file, as a crash or an OOM kill would
            proc.wait(10)
            proc.stderr.close()  # type: ignore[union-attr]
        # Nothing that looks complete: no blob, no file where the model looks.
        assert not (cache / "blobs").exists() or not any((cache / "blobs").iterdir())
        assert not (Path("/app/data") / local).exists()
        del server.hold_after["/w.bin"]
        server.release.set()

        result = kingpost("fetch", str(bundle))
        assert result.returncode == 0, result.stderr
        assert server.ranges[-1] == "bytes=1000000-"  # the second run asked only for the rest
        digest = hashlib.sha256(data).hexdigest()
        assert (cache / "blobs" / digest).read_bytes() == data
        assert not list((cache / "partial").glob("*.part"))
        if APP_WRITABLE:  # else kingpost warns that it cannot link there
            assert (Path("/app/data") / local).read_bytes() == data


def test_a_file_whose_digest_differs_is_refused(copy_bundle: Callable[..., Path], cache: Path) -> None:
    good, served = chunks(50_000, seed=2), chunks(50_000, seed=3)
    with FileServer({"/w.bin": served}) as server:
        bundle = copy_bundle("external_data", **external(server, "/w.bin", "w.bin",
                                                         sha256=hashlib.sha256(good).hexdigest()))
        result = kingpost("fetch", str(bundle))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (f"error: {bundle / 'config.yaml'}: external_data[0]: the file downloaded from "
                        f"{server.url}/w.bin is corrupt (its sha256 is {hashlib.sha256(served).hexdigest()}, "
                        f"expected {hashlib.sha256(good).hexdigest()}); it was discarded.")
    assert not (cache / "blobs").exists() or not any((cache / "blobs").iterdir())
    assert not list((cache / "partial").glob("*"))


def test_a_second_bundle_reuses_the_cache_with_the_server_stopped(copy_bundle: Callable[..., Path], cache: Path,
                                                                  tmp_path: Path, serve: Callable[..., Any]) -> None:
    data = chunks(200_000, seed=4)
    with FileServer({"/weights/w.bin": data}) as server:
        first = copy_bundle("external_data", **external(server, "/weights/w.bin", "nested/w.bin"))
        assert kingpost("fetch", str(first)).returncode == 0
        url = server.url
    second = tmp_path / "second"
    shutil.copytree(first, second)
    with pytest.raises(httpx.ConnectError):  # the server is gone
        httpx.get(url + "/weights/w.bin")
    running = serve(second, env={"KINGPOST_OFFLINE": "1"})
    answer = httpx.post(running.url + "/v1/models/model:predict", json={"path": "nested/w.bin"})
    assert answer.json() == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_a_404_is_one_sentence_naming_the_key_and_the_url(copy_bundle: Callable[..., Path], cache: Path,
                                                          serve: Callable[..., Any]) -> None:
    with FileServer({}) as server:
        bundle = copy_bundle("external_data", **external(server, "/missing.bin", "m.bin"))
        result = kingpost("fetch", str(bundle))
        assert result.returncode == 1
        assert result.stderr == (f"error: {bundle / 'config.yaml'}: external_data[0]: {server.url}/missing.bin "
                                 "answered 404 Not Found.\n")
        running = serve(bundle, wait="bound")  # serve: the load fails, and the server exits 1
        assert running.wait(60) == 1
        assert f"external_data[0]: {server.url}/missing.bin answered 404 Not Found." in running.stderr()


def test_offline_without_a_cached_copy_is_one_sentence(copy_bundle: Callable[..., Path], cache: Path) -> None:
    bundle = copy_bundle("external_data", external_data=[{"url": "http://127.0.0.1:9/w.bin",
                                                          "local_data_path": "w.bin"}])
    result = kingpost("fetch", str(bundle), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    assert "is not in the cache" in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_object_store_source_without_its_sdk_names_the_extra(copy_bundle: Callable[..., Path], cache: Path,
                                                                tmp_path: Path) -> None:
    # boto3 made absent even where the extra is installed: a package of that name that fails to import
    shadow = tmp_path / "shadow" / "boto3"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'boto3'\", name='boto3')\n")
    bundle = copy_bundle("external_data", external_data=None,
                         weights=[{"source": "s3://bucket/models/x", "mount_location": "/app/kp-s3"}])
    path = os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])
    result = kingpost("fetch", str(bundle), env={"PYTHONPATH": path})
    assert result.returncode == 1
    assert result.stderr == (f"error: {bundle / 'config.yaml'}: weights[0]: s3://bucket/models/x is a s3:// "
                             "source, which needs the boto3 package: pip install 'kingpost[s3]'.\n")


# -- the Hugging Face Hub -----------------------------------------------------------------------------

TINY = {"config.json": b'{"labels": ["cat", "dog"]}', "weights.bin": chunks(400_000, seed=5),
        "README.md": b"# tiny\n"}


@needs_app
def test_model_cache_paths_answer_over_http(serve: Callable[..., Any], cache: Path, app_paths: list[Path],
                                            tmp_path: Path) -> None:
    app_paths.append(Path("/app/model_cache/kingpost-test-tiny"))
    with HubServer({"kingpost-test/tiny": TINY}) as hub:
        running = serve("model_cache_paths", env={"HF_ENDPOINT": hub.url, "TRUSS_SECRET_hf_access_token": "tok"})
        assert httpx.post(running.url + "/v1/models/model:predict", json=1).json() == {"label": "dog"}
        downloads = [(p, h) for p, h in hub.requests if "/resolve/" in p]
        assert {p.rsplit("/", 1)[1] for p, _ in downloads} == set(TINY)
        assert all(h.get("authorization") == "Bearer tok" for _, h in downloads)  # Truss's hf_access_token
    mounted = Path("/app/model_cache/kingpost-test-tiny")
    assert mounted.is_symlink() and (mounted / "weights.bin").read_bytes() == TINY["weights.bin"]


@needs_app
def test_lazy_data_resolver_waits_and_readiness_says_why(serve: Callable[..., Any], cache: Path,
                                                         app_paths: list[Path]) -> None:
    app_paths.append(Path("/app/model_cache/kingpost-test-lazy"))
    with HubServer({"kingpost-test/tiny-lazy": {**TINY, "config.json": b'{"scale": 3}'}}) as hub:
        hub.hold_after["/kingpost-test/tiny-lazy/resolve/" + HubServer.COMMIT + "/weights.bin"] = 100_000
        running = serve("model_cache_lazy", env={"HF_ENDPOINT": hub.url}, wait="live")
        assert hub.served.wait(30)
        not_ready = running.get("/v1/models/model")
        assert not_ready.status_code == 503
        assert not_ready.json() == {"error": "the model is loading (fetching weights in the background)."}
        hub.release.set()
        running.wait_status("/v1/models/model", 200)
        answer = httpx.post(running.url + "/v1/models/model:predict", json=2).json()
    assert answer == {"scale": 6, "weights_sha256": hashlib.sha256(TINY["weights.bin"]).hexdigest(),
                      "files": ["config.json", "weights.bin"]}  # ignore_patterns kept README.md out


def test_a_corrupt_hub_file_is_refused(copy_bundle: Callable[..., Path], cache: Path) -> None:
    bundle = copy_bundle("model_cache_paths")
    with HubServer({"kingpost-test/tiny": TINY}) as hub:
        hub.corrupt.add("weights.bin")
        result = kingpost("fetch", str(bundle), env={"HF_ENDPOINT": hub.url})
    assert result.returncode == 1
    assert "model_cache[0]: the file downloaded from" in result.stderr
    assert "is corrupt (its sha256 is" in result.stderr and "it was discarded." in result.stderr
    assert not (cache / "blobs" / hashlib.sha256(TINY["weights.bin"]).hexdigest()).exists()


def test_weights_hf_source_with_revision_and_v1_hf_cache(copy_bundle: Callable[..., Path], cache: Path,
                                                         tmp_path: Path) -> None:
    mount = tmp_path / "mnt" / "tiny"
    bundle = copy_bundle("model_cache_paths", model_cache=[
        {"repo_id": "kingpost-test/tiny", "revision": "main", "allow_patterns": ["*.json"]}],
        weights=[{"source": "hf://kingpost-test/tiny@main", "mount_location": str(mount)}])
    with HubServer({"kingpost-test/tiny": TINY}) as hub:
        result = kingpost("fetch", str(bundle), env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "from-env"})
        assert result.returncode == 0, result.stderr
        asked = [p for p, _ in hub.requests if p.startswith("/api/models/")]
        hub_calls = [h for p, h in hub.requests if p.startswith("/api/models/") or "/resolve/" in p]
    assert asked and all("/revision/main" in p for p in asked)
    assert hub_calls and all(h.get("authorization") == "Bearer from-env" for h in hub_calls)  # HF_TOKEN
    assert sorted(p.name for p in mount.iterdir()) == sorted(TINY)
    # model_cache v1 lands in the Hugging Face cache too, where from_pretrained(repo_id) looks
    snapshot = tmp_path / "hf-cache" / "models--kingpost-test--tiny" / "snapshots" / HubServer.COMMIT
    assert (snapshot / "config.json").read_bytes() == TINY["config.json"]
    assert not (snapshot / "weights.bin").exists()  # allow_patterns
    assert (tmp_path / "hf-cache" / "models--kingpost-test--tiny" / "refs" / "main").read_text() == HubServer.COMMIT


def test_two_workers_fetch_a_source_once(copy_bundle: Callable[..., Path], cache: Path,
                                         serve: Callable[..., Any]) -> None:
    data = chunks(500_000, seed=6)
    local = f"kp-{os.getpid()}-workers.bin"
    with FileServer({"/w.bin": data}) as server:
        server.hold_after["/w.bin"] = 100_000  # the first worker's download stalls half-way
        bundle = copy_bundle("external_data", **external(server, "/w.bin", local))
        running = serve(bundle, "--workers", "2", wait="bound")
        assert server.served.wait(30)
        time.sleep(3)  # the second worker comes up meanwhile, and must wait instead of fetching too
        assert [path for path, _ in server.requests] == ["/w.bin"]
        del server.hold_after["/w.bin"]
        server.release.set()  # the stalled connection ends; the first worker resumes with Range
        running.wait_status("/v1/models/model", 200)
        for _ in range(4):
            answer = httpx.post(running.url + "/v1/models/model:predict", json={"path": local}).json()
            assert answer == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        assert server.ranges == [None, "bytes=100000-"]  # one download, resumed once, shared by both workers


def test_env_fetch_and_a_failed_lazy_fetch(copy_bundle: Callable[..., Path], cache: Path,
                                          serve: Callable[..., Any]) -> None:
    data = chunks(10_000, seed=8)
    with FileServer({"/w.bin": data}) as server:
        bundle = copy_bundle("external_data", **external(server, "/w.bin", f"kp-{os.getpid()}-env.bin"))
        result = kingpost("env", str(bundle), "--fetch")
        assert result.returncode == 0, result.stderr
        assert f"fetched  external_data[0]: {server.url}/w.bin (1 file(s)" in result.stdout
        assert (cache / "blobs" / hashlib.sha256(data).hexdigest()).is_file()
    with HubServer({}) as hub:  # no such repository: load() fails in block_until_download_complete
        running = serve("model_cache_lazy", env={"HF_ENDPOINT": hub.url}, wait="bound")
        assert running.wait(60) == 1
    assert ("Model.load() raised RuntimeError: Error occurred while fetching data: "
            in running.stderr())
    assert "model_cache[0]: the Hugging Face repository 'kingpost-test/tiny-lazy'@main could not be listed" \
        in running.stderr()


def test_verify_refetches_a_damaged_cached_file_and_a_terminal_gets_a_bar(copy_bundle: Callable[..., Path],
                                                                          cache: Path) -> None:
    import pty

    data = chunks(2_000_000, seed=10)
    local = f"kp-{os.getpid()}-verify.bin"
    with FileServer({"/w.bin": data}) as server:
        bundle = copy_bundle("external_data", **external(server, "/w.bin", local))
        first = kingpost("fetch", str(bundle))
        assert first.returncode == 0 and "\r" not in first.stderr  # not a terminal: no bar
        blob = cache / "blobs" / hashlib.sha256(data).hexdigest()
        blob.chmod(0o644)
        with blob.open("r+b") as f:  # damage the cached copy in place (a disk error, a stray write)
            f.write(b"\0" * 16)
        assert kingpost("fetch", str(bundle)).returncode == 0  # size unchanged: reused as it is
        assert len(server.requests) == 1
        controller, terminal = pty.openpty()
        proc = subprocess.run([sys.executable, "-m", "kingpost", "fetch", str(bundle), "--verify"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, timeout=60,
                              env=os.environ.copy())
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        os.close(controller)
    assert proc.returncode == 0
    assert len(server.requests) == 2  # fetched again
    assert b"does not match its sha256 any more" in shown
    assert b"\rfetching 1 file(s) [" in shown and b"100.0% 2.0/2.0 MB" in shown
    assert blob.read_bytes() == data
    if APP_WRITABLE:
        assert (Path("/app/data") / local).read_bytes() == data


@pytest.mark.parametrize(("config", "sentence"), [
    ({"model_cache": [{"revision": "main"}]}, "model_cache[0].repo_id: expected a non-empty string, found <missing>."),
    ({"model_cache": [{"repo_id": "a/b", "use_volume": True, "revision": "main"}]},
     "model_cache[0].volume_folder: expected a folder name (use_volume is true), found <missing>."),
    ({"model_cache": [{"repo_id": "a/b", "use_volume": True, "volume_folder": "x"}]},
     "model_cache[0].revision: expected a revision (branch, tag or commit) for a use_volume Hugging Face repo, "
     "found <missing>."),
    ({"model_cache": [{"repo_id": "a/b", "use_volume": True, "volume_folder": "x", "revision": "r"},
                      {"repo_id": "c/d"}]},
     "model_cache: expected every entry with the same use_volume (all v1 or all v2), found <a mix of use_volume "
     "true and false>."),
    ({"weights": [{"source": "ftp://x/y", "mount_location": "/m"}]},
     "weights[0].source: expected a URI such as hf://owner/repo@revision, https://host/file, s3://bucket/path, "
     "gs://bucket/path or azure://account/path, found 'ftp://x/y'."),
    ({"weights": [{"source": "hf://a/b", "mount_location": "models/b"}]},
     "weights[0].mount_location: expected an absolute path, found 'models/b'."),
    ({"external_data": [{"url": "https://h/x", "local_data_path": "../x"}]},
     "external_data[0].local_data_path: expected a relative path inside the data directory, found '../x'."),
    ({"external_data": [{"url": "https://h/x", "local_data_path": "x", "sha256": "abc"}]},
     "external_data[0].sha256: expected 64 hexadecimal digits, found 'abc'."),
    ({"weights": [{"source": "hf://a/b", "mount_location": "/m"}, {"source": "hf://c/d", "mount_location": "/m"}]},
     "weights[1]: expected a path no other entry uses (as weights[0]), found '/m'."),
], ids=["no repo_id", "no volume_folder", "no revision", "mixed volumes", "bad scheme", "relative mount",
        "escaping path", "bad sha256", "same mount"])
def test_a_bad_source_is_one_sentence_from_check(copy_bundle: Callable[..., Path], config: dict[str, Any],
                                                 sentence: str) -> None:
    bundle = copy_bundle("external_data", **{"external_data": None, **config})
    result = kingpost("check", str(bundle))
    assert result.returncode == 1
    assert result.stderr == f"error: {bundle / 'config.yaml'}: {sentence}\n"


def test_in_process_load_fetches_before_the_model(copy_bundle: Callable[..., Path], cache: Path,
                                                  load: Callable[..., Any]) -> None:
    data = chunks(30_000, seed=11)
    with FileServer({"/w.bin": data}) as server:
        bundle = copy_bundle("external_data", **external(server, "/w.bin", f"kp-{os.getpid()}-inproc/w.bin"))
        answer = load(str(bundle)).predict({"path": f"kp-{os.getpid()}-inproc/w.bin"})
    assert answer == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_sigterm_mid_download_stops_at_once_and_keeps_what_arrived(copy_bundle: Callable[..., Path], cache: Path,
                                                                   serve: Callable[..., Any]) -> None:
    data = chunks(1_000_000, seed=12)
    with FileServer({"/w.bin": data}) as server:
        server.hold_after["/w.bin"] = 300_000  # stalls for up to 30 s
        bundle = copy_bundle("external_data", **external(server, "/w.bin", f"kp-{os.getpid()}-term.bin"))
        running = serve(bundle, wait="bound")
        assert server.served.wait(30)
        wait_for(lambda: any(p.stat().st_size == 300_000 for p in (cache / "partial").glob("*.part")), "the part")
        start = time.monotonic()
        running.send_signal(signal.SIGTERM)
        running.wait(20)
        assert time.monotonic() - start < 10, "the server waited for the download instead of stopping"
        assert [p.stat().st_size for p in (cache / "partial").glob("*.part")] == [300_000]  # resumable
