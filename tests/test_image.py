"""``kingpost image``: which engine builds, and a real image built and run without a Docker daemon.

No Docker daemon runs here, so the engine choice is tested with fake ``docker``/``podman``/``buildah``
scripts on PATH that record their arguments (the only mock: everything else is real).

The image stage (``-m image``, scripts/image-e2e.sh) builds a Debian base with debootstrap, the
bundle's context on it with ``buildah bud --isolation chroot``, and runs it with podman.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import bundle_path
from kingpost.container.context import write_context
from kingpost.container.image import build_command, build_image, default_tag
from kingpost.errors import PackagingError

FAKE = """#!/bin/sh
printf '%s\\n' "${{0##*/}} $*" >> "{log}"
case "$1" in info) exit {info};; esac
exit {build}
"""


def fake_engines(directory: Path, *, info: int = 0, build: int = 0, engines: tuple[str, ...]) -> Path:
    """Write fake engine scripts into ``directory``; returns the log they append their arguments to."""
    directory.mkdir(exist_ok=True)
    log = directory / "calls.log"
    log.touch()
    for name in engines:
        script = directory / name
        script.write_text(FAKE.format(log=log, info=info, build=build))
        script.chmod(0o755)
    return log


def test_docker_builds_when_its_daemon_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = fake_engines(tmp_path / "bin", engines=("docker", "podman", "buildah"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    context = tmp_path / "ctx"
    assert build_image(bundle_path("context_app"), tag="demo:1", context_dir=context) == "demo:1"
    assert log.read_text().splitlines() == ["docker info", f"docker build --tag demo:1 {context}"]
    assert (context / "Dockerfile").is_file()  # a given context directory is kept


def test_temporary_context_is_removed_after_a_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = fake_engines(tmp_path / "bin", engines=("docker",))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # re-read TMPDIR
    try:
        assert build_image(bundle_path("context_app"), tag=None, context_dir=None) == "kingpost-context-app:latest"
    finally:
        tempfile.tempdir = None
    context = Path(log.read_text().splitlines()[-1].split()[-1])
    assert context.is_relative_to(tmp_path)
    assert not context.exists()


def test_podman_when_docker_has_no_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_engines(tmp_path / "docker-bin", info=1, engines=("docker",))
    log = fake_engines(tmp_path / "bin", engines=("podman", "buildah"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'docker-bin'}{os.pathsep}{tmp_path / 'bin'}")
    build_image(bundle_path("context_app"), tag="demo:1", context_dir=tmp_path / "ctx")
    assert log.read_text().splitlines() == [f"podman build --format docker --tag demo:1 {tmp_path / 'ctx'}"]


def test_buildah_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = fake_engines(tmp_path / "bin", engines=("buildah",))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    build_image(bundle_path("context_app"), tag="demo:1", context_dir=tmp_path / "ctx")
    assert log.read_text().splitlines() == [f"buildah bud --format docker --layers --tag demo:1 {tmp_path / 'ctx'}"]


def test_failed_build_keeps_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_engines(tmp_path / "bin", build=3, engines=("docker",))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(PackagingError, match=r"docker could not build the image \(exit status 3\); the build "
                                             rf"context is kept in {tmp_path / 'ctx'}\."):
        build_image(bundle_path("context_app"), tag="demo:1", context_dir=tmp_path / "ctx")
    assert (tmp_path / "ctx" / "Dockerfile").is_file()


def test_no_engine_is_one_sentence_naming_the_context(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty), "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "kingpost", "image", str(bundle_path("context_app"))],
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: no container engine found (docker with a running daemon, podman or buildah); "
                               "the build context is in ")
    context = Path(lines[0].split("the build context is in ", 1)[1].split(",", 1)[0])
    assert context.is_relative_to(tmp_path) and (context / "Dockerfile").is_file()


def test_default_tag_is_a_valid_reference() -> None:
    assert default_tag("My Model/v2") == "kingpost-my-model-v2:latest"
    assert default_tag("...") == "kingpost-model:latest"


# -- the image stage ------------------------------------------------------------------------------

SUITE = "bookworm"
CACHE = Path(os.environ.get("KINGPOST_CI_CACHE", "/var/cache/kingpost-ci"))
MIRROR = os.environ.get("KINGPOST_CI_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # trusted in the base too: a TLS-inspecting proxy keeps working
RUN_FLAGS = ["--runtime", "runc", "--cgroup-manager=cgroupfs", "--events-backend=file", "--ulimit", "nofile=4096:4096",
             "--ulimit", "nproc=4096:4096", "--network", "host", "--health-interval=disable"]


def _image_stage_skip() -> str | None:
    missing = [tool for tool in ("buildah", "podman", "debootstrap", "runc") if shutil.which(tool) is None]
    if missing:
        return f"the image stage needs {', '.join(missing)} (apt-get install buildah podman debootstrap runc)"
    if os.geteuid() != 0:
        return "the image stage needs root (debootstrap, buildah from scratch)"
    return None


def run(*args: str, timeout: float = 600) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def base_image() -> str:
    """A local Debian image with python3, built once per ISO week and kept in podman's store.

    The debootstrap tarball is cached under $KINGPOST_CI_CACHE (/var/cache/kingpost-ci); the image
    tag names the week and the host's CA bundle, so either changing gives a fresh base.
    """
    week = datetime.date.today().strftime("%G-w%V")
    ca = HOST_CA.read_bytes() if HOST_CA.is_file() else b""
    tag = f"localhost/kingpost-ci-base:{SUITE}-{week}-{hashlib.sha256(ca).hexdigest()[:8]}"
    if subprocess.run(["buildah", "inspect", "--type", "image", tag], capture_output=True, check=False).returncode == 0:
        return tag
    tarball = CACHE / f"debootstrap-{SUITE}-{week}.tar"
    if not tarball.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        for old in CACHE.glob(f"debootstrap-{SUITE}-*.tar"):
            old.unlink()
        rootfs = Path(tempfile.mkdtemp(dir=CACHE, prefix="rootfs-"))
        try:
            run("debootstrap", "--variant=minbase", "--include=python3-minimal,python3-venv,python3-pip",
                SUITE, str(rootfs), MIRROR, timeout=1200)
            partial = tarball.with_suffix(".tar.partial")
            run("tar", "--sort=name", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), ".")
            partial.rename(tarball)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    container = run("buildah", "from", "scratch").strip()
    try:
        run("buildah", "add", "--quiet", container, str(tarball), "/")
        env = ["--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        if ca:
            run("buildah", "copy", "--quiet", container, str(HOST_CA), str(HOST_CA))
            env += ["--env", f"SSL_CERT_FILE={HOST_CA}"]
        run("buildah", "config", *env, container)
        run("buildah", "commit", "--quiet", container, tag)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
    return tag


def buildah_bud(context: Path, tag: str, base: str) -> str:
    """kingpost's own buildah command, plus what this machine needs: chroot isolation and no pulls."""
    command = build_command(shutil.which("buildah") or "buildah", tag, context)
    command[-1:-1] = ["--isolation", "chroot", "--pull=never", "--build-arg", f"BASE_IMAGE={base}"]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
                            check=False)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}"
    return result.stdout


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def container(image: str, *args: str, command: list[str] | None = None) -> Iterator[str]:
    name = f"kingpost-e2e-{os.getpid()}"
    run("podman", "run", "--detach", "--name", name, *RUN_FLAGS, *args, image, *(command or []))
    try:
        yield name
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)


@pytest.mark.image
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_real_image_builds_and_answers(request: pytest.FixtureRequest, copy_bundle: Callable[..., Path],
                                       tmp_path: Path) -> None:
    if "image" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the image stage runs only when selected: pytest -m image (scripts/image-e2e.sh)")
    reason = _image_stage_skip()
    if reason:
        pytest.skip(reason)
    timings: dict[str, float] = {}
    start = time.monotonic()
    base = base_image()
    timings["base"] = time.monotonic() - start

    bundle = copy_bundle("context_app")
    tag = "localhost/kingpost-e2e:context-app"
    start = time.monotonic()
    buildah_bud(write_context(bundle, tmp_path / "ctx"), tag, base)
    timings["build"] = time.monotonic() - start

    config = json.loads(run("podman", "image", "inspect", tag))[0]
    cmd = config["Config"]["Cmd"]
    assert cmd == ["kingpost", "serve", "/app/bundle", "--host", "0.0.0.0", "--port", "8080"]
    assert config["Config"]["User"] == "10001:10001"
    assert "/v1/models/model" in " ".join(config["Healthcheck"]["Test"])

    port = 8080
    if not port_free(port):  # --network host shares the host's ports: run the same CMD on a free one
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api_key").write_text("run-time-secret\n")
    secrets.chmod(0o755)
    (secrets / "api_key").chmod(0o644)
    start = time.monotonic()
    command = None if port == 8080 else [*cmd[:-1], str(port)]
    with container(tag, "--volume", f"{secrets}:/secrets:ro", command=command) as name:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v1/models/model", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, run("podman", "logs", name)
            time.sleep(0.2)
        timings["ready"] = time.monotonic() - start
        response = httpx.post(url + "/v1/models/model:predict", json={"host": "bücher.example"}, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json() == {"ascii": "xn--bcher-kva.example",
                                   "greeting": 'hello $USER "world", it\'s \\ ok', "api_key_set": True}
        assert run("podman", "exec", name, "id", "-u").strip() == "10001"
        assert run("podman", "exec", name, "printenv", "KP_CONTEXT_GREETING") == 'hello $USER "world", it\'s \\ ok\n'
        assert run("podman", "exec", name, "cat", "/app/build-stamp") == "built\n"
        if port == 8080:
            run("podman", "healthcheck", "run", name)
        run("podman", "stop", "--time", "30", name)  # SIGTERM: the server drains and exits 0
        assert run("podman", "inspect", name, "--format", "{{.State.ExitCode}}").strip() == "0"

    # A code edit rebuilds only the last layers: no requirement is installed again.
    model = bundle / "model" / "model.py"
    model.write_text(model.read_text() + "\n# edited\n")
    start = time.monotonic()
    output = buildah_bud(write_context(bundle, tmp_path / "ctx"), tag, base)
    timings["rebuild"] = time.monotonic() - start
    assert "Successfully installed" not in output and "Using cache" in output, output
    sys.stderr.write("image stage timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + "\n")


@pytest.mark.image
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_real_image_bakes_weights_and_runs_build_commands(request: pytest.FixtureRequest,
                                                          copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    """external_data baked at build (--weights bake) from a server that is gone when the container
    runs; Truss's /app/data path and data_dir both see it; build_commands edited /packages."""
    if "image" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the image stage runs only when selected: pytest -m image (scripts/image-e2e.sh)")
    reason = _image_stage_skip()
    if reason:
        pytest.skip(reason)
    from fileserver import FileServer, chunks

    base = base_image()
    data = chunks(300_000, seed=9)
    tag = "localhost/kingpost-e2e:image-weights"
    with FileServer({"/w.bin": data}) as files:  # buildah's chroot RUN shares the host's loopback
        bundle = copy_bundle("image_weights", external_data=[{"url": files.url + "/w.bin",
                                                              "local_data_path": "weights/w.bin"}])
        buildah_bud(write_context(bundle, tmp_path / "ctx", weights="bake"), tag, base)
    port = 8080
    if not port_free(port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    command = ["kingpost", "serve", "/app/bundle", "--host", "0.0.0.0", "--port", str(port)]
    with container(tag, "--env", "KINGPOST_OFFLINE=1", command=command) as name:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v1/models/model", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, run("podman", "logs", name)
            time.sleep(0.2)
        answer = httpx.post(url + "/v1/models/model:predict", json={"path": "weights/w.bin"}, timeout=10).json()
        digest = hashlib.sha256(data).hexdigest()
        assert answer == {"key": "TEST_SECOND_VALUE", "sha256": digest, "at_app_data": digest}
        run("podman", "stop", "--time", "30", name)
