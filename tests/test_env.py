"""Isolated environments: ``--isolated`` builds a venv from the bundle's requirements once, then reuses it.

Everything runs the real CLI in subprocesses against real installers (uv, or pip where forced) and
a per-test cache (``KINGPOST_CACHE_DIR``). Tests that only need *an* environment with
text-unidecode share one built once per session (:func:`shared`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import bundle_path
from kingpost.config import PYTHON_VERSIONS, current_python_version
from kingpost.isolated._install import failure
from kingpost.isolated._python import find_interpreter
from kingpost.isolated.env import environment
from serving import start

BUILDING = "kingpost: building environment for"
HERE = current_python_version()  # bundles built in tests use the running interpreter: CI has it


def kingpost(*args: str, cache: Path, extra_env: dict[str, str] | None = None, python: str = sys.executable,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KINGPOST_CACHE_DIR": str(cache), **(extra_env or {})}
    return subprocess.run([python, "-m", "kingpost", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def copy(name: str, target: Path, **config: Any) -> Path:
    """Copy ``tests/bundles/<name>`` to ``target``, with ``config`` keys set in its config.yaml."""
    shutil.copytree(bundle_path(name), target)
    path = target / "config.yaml"
    path.write_text(yaml.safe_dump({**(yaml.safe_load(path.read_text()) or {}), **config}, sort_keys=False))
    return target


def env_dirs(cache: Path) -> list[Path]:
    """Environments a run would look at (dot-names are locks, logs and builds in progress)."""
    root = cache / "envs"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


@dataclass
class Shared:
    bundle: Path
    cache: Path
    first: subprocess.CompletedProcess[str]

    @property
    def env(self) -> Path:
        assert self.first.returncode == 0, self.first.stderr
        return Path(json.loads(self.first.stdout)["prefix"])


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    """env_requirement (text-unidecode) built once, by a first ``predict --isolated``."""
    root = tmp_path_factory.mktemp("env-shared")
    bundle = copy("env_requirement", root / "env_requirement", python_version=HERE)
    first = kingpost("predict", str(bundle), "-d", '"héllo wörld"', "--isolated", cache=root / "cache")
    return Shared(bundle, root / "cache", first)


def test_in_process_predict_names_the_missing_requirement(tmp_path: Path) -> None:
    result = kingpost("predict", str(bundle_path("env_requirement")), "-d", '"x"', cache=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "missing requirement" in lines[0] and "'text-unidecode==1.3'" in lines[0] and "--isolated" in lines[0]
    assert not (tmp_path / "envs").exists()


@pytest.mark.slow
def test_isolated_builds_once_then_reuses(shared: Shared) -> None:
    first = shared.first
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    assert answer["ascii"] == "hello world"
    env = shared.env
    assert env.parent == shared.cache / "envs" and env.name.startswith(HERE + "-")
    assert f"{BUILDING} env-requirement (python {HERE[2]}.{HERE[3:]}, 1 requirement)..." in first.stderr
    assert "installing text-unidecode==1.3, kingpost" in first.stderr
    assert "kingpost: environment ready in" in first.stderr
    marker = env / "kingpost-env.json"
    before = marker.stat().st_mtime_ns, sorted(p.name for p in (env / "bin").iterdir())

    again = kingpost("predict", str(shared.bundle), "-d", '"Ünïcödé"', "--isolated", cache=shared.cache)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["ascii"] == "Unicode"
    assert again.stderr == ""  # nothing built, nothing installed, nothing to say
    assert (marker.stat().st_mtime_ns, sorted(p.name for p in (env / "bin").iterdir())) == before
    assert env in env_dirs(shared.cache)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["requirements.txt", "pyproject.toml"])
def test_requirements_file_defines_the_same_environment(shared: Shared, tmp_path: Path, form: str) -> None:
    bundle = copy("env_requirement", tmp_path / "b", python_version=HERE, requirements=None, requirements_file=form)
    if form == "requirements.txt":
        (bundle / form).write_text("# the one requirement\ntext-unidecode==1.3  # ascii folding\n")
    else:
        (bundle / form).write_text('[project]\nname = "b"\nversion = "1"\ndependencies = ["text-unidecode==1.3"]\n')
    shown = kingpost("env", str(bundle), cache=shared.cache)
    assert shown.returncode == 0, shown.stderr
    assert f"environment   {shared.env}\nstate         ready\n" in shown.stdout
    result = kingpost("predict", str(bundle), "-d", '"ß"', "--isolated", cache=shared.cache)
    assert (result.returncode, result.stderr) == (0, "")  # reused: nothing built
    assert json.loads(result.stdout)["ascii"] == "ss"
    assert json.loads(result.stdout)["prefix"] == str(shared.env)


@pytest.mark.slow
def test_requirements_txt_with_options_is_installed_from_the_file(tmp_path: Path) -> None:
    bundle = copy("env_requirement", tmp_path / "b", python_version=HERE, requirements=None,
                  requirements_file="requirements.txt")
    (bundle / "requirements.txt").write_text("--prefer-binary\ntext-unidecode==1.3\n")
    result = kingpost("predict", str(bundle), "-d", '"é"', "--isolated", cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ascii"] == "e" and BUILDING in result.stderr


@pytest.mark.slow
def test_uninstallable_requirement_is_one_sentence_and_leaves_nothing_trusted(tmp_path: Path) -> None:
    bundle = copy("env_bad_requirement", tmp_path / "b", python_version=HERE)
    cache = tmp_path / "cache"
    result = kingpost("predict", str(bundle), "-d", "1", "--isolated", cache=cache)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in result.stderr.splitlines() if not line.startswith("kingpost:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: could not install requirement 'this-package-does-not-exist-kingpost==1.0' "
                                f"for bundle {bundle}: no ")
    assert env_dirs(cache) == []
    assert not [p for p in (cache / "envs").iterdir() if ".tmp-" in p.name]
    log = Path(errors[0].rsplit("(installer output: ", 1)[1].rstrip(").")).read_text()
    assert "this-package-does-not-exist-kingpost" in log
    shown = kingpost("env", str(bundle), cache=cache)
    assert "\nstate         absent (" in shown.stdout


@pytest.mark.slow
def test_env_command_shows_rebuilds_and_clears(tmp_path: Path) -> None:
    bundle = copy("echo", tmp_path / "echo", python_version=HERE)
    cache = tmp_path / "cache"
    shown = kingpost("env", str(bundle), cache=cache)
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert lines["environment"].startswith(str(cache / "envs" / HERE))
    assert lines["state"].startswith("absent")
    assert lines["requirement"] == "(none)" and lines["kingpost"].startswith("0.")
    assert lines["hash"].startswith(Path(lines["environment"]).name.split("-")[1])

    rebuilt = kingpost("env", str(bundle), "--rebuild", cache=cache)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert BUILDING in rebuilt.stdout and "\nstate         ready\n" in rebuilt.stdout
    env = Path(lines["environment"])
    marker = json.loads((env / "kingpost-env.json").read_text())
    assert marker["hash"] == lines["hash"].split()[0]

    (env / "kingpost-env.json").unlink()  # as if a build had died before its last step
    assert "\nstate         broken (" in kingpost("env", str(bundle), cache=cache).stdout
    repaired = kingpost("predict", str(bundle), "-d", "[1, 2]", "--isolated", cache=cache)
    assert repaired.returncode == 0 and json.loads(repaired.stdout) == [1, 2]
    assert f"kingpost: removing the incomplete environment {env}" in repaired.stderr and BUILDING in repaired.stderr

    cleared = kingpost("env", str(bundle), "--clear", cache=cache)
    assert (cleared.returncode, cleared.stdout) == (0, f"Removed environment {env}\n")
    assert env_dirs(cache) == []
    assert kingpost("env", str(bundle), "--clear", cache=cache).stdout == f"No environment to remove at {env}\n"


@pytest.mark.slow
def test_concurrent_runs_build_once(tmp_path: Path) -> None:
    bundle = copy("echo", tmp_path / "echo", python_version=HERE)
    env = {**os.environ, "KINGPOST_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "kingpost", "predict", str(bundle), "-d", "[7]", "--isolated"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    results = [(p.communicate(timeout=600), p.returncode) for p in procs]
    assert [(json.loads(out), code) for (out, _), code in results] == [([7], 0)] * 3
    assert sum(err.count(BUILDING) for (_, err), _ in results) == 1
    assert len(env_dirs(tmp_path / "cache")) == 1


def _other_python() -> tuple[str, int] | None:
    for version in ("py310", "py312", "py313", "py311"):
        if version != HERE and find_interpreter(int(version[3:])) is not None:
            return version, int(version[3:])
    return None


@pytest.mark.slow
def test_python_version_picks_the_interpreter(shared: Shared, tmp_path: Path) -> None:
    other = _other_python()
    if other is None:
        pytest.skip("only one Python 3 minor version is installed here")
    version, minor = other
    bundle = copy("env_python_version", tmp_path / "b", python_version=version)
    result = kingpost("predict", str(bundle), "-d", "1", "--isolated", cache=shared.cache)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["python"] == [3, minor]
    assert f"(python 3.{minor}, 0 requirements)" in result.stderr


def test_python_version_not_installed_lists_the_installed_ones(tmp_path: Path) -> None:
    absent = [v for v in PYTHON_VERSIONS if find_interpreter(int(v[3:])) is None]
    if not absent:
        pytest.skip("every Python a bundle may ask for is installed here")
    bundle = copy("env_python_version", tmp_path / "b", python_version=absent[-1])
    result = kingpost("predict", str(bundle), "-d", "1", "--isolated", cache=tmp_path / "cache")
    minor = absent[-1][3:]
    running = ".".join(map(str, sys.version_info[:3]))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: bundle {bundle} asks for python_version {absent[-1]}, "
                                    f"but Python 3.{minor} is not installed here (installed: ")
    assert running in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "cache" / "envs").exists()


def test_system_packages_are_checked_not_installed(tmp_path: Path) -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("no dpkg here")
    bundle = copy("echo", tmp_path / "echo", python_version=HERE,
                  system_packages=["coreutils", "kingpost-no-such-system-package"])
    shown = kingpost("env", str(bundle), cache=tmp_path / "cache")
    assert shown.returncode == 0, shown.stderr
    warning = "kingpost: warning: system packages not installed here: kingpost-no-such-system-package ("
    assert shown.stdout.startswith(warning)


@pytest.mark.slow
def test_serve_isolated_answers_from_the_environment_and_drains_on_sigterm(shared: Shared) -> None:
    server = start(shared.bundle, "--isolated", env={"KINGPOST_CACHE_DIR": str(shared.cache)}, timeout=120)
    try:
        response = httpx.post(f"{server.url}/v1/models/model:predict", json="naïve café", timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["ascii"] == "naive cafe"
        assert response.json()["prefix"] == str(shared.env)
        assert BUILDING not in server.stderr()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        server.stop()
        server.stderr_path.unlink(missing_ok=True)


@pytest.mark.slow
def test_pip_builds_when_uv_is_not_wanted(tmp_path: Path) -> None:
    bundle = copy("echo", tmp_path / "echo", python_version=HERE)
    result = kingpost("predict", str(bundle), "-d", '"pip"', "--isolated", cache=tmp_path / "cache",
                      extra_env={"KINGPOST_INSTALLER": "pip"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "pip" and " with pip\n" in result.stderr
    (env,) = env_dirs(tmp_path / "cache")
    script = (env / "bin" / "kingpost").read_text().splitlines()[0]
    assert script == f"#!{env}/bin/python"  # built in a temporary directory, then pointed at its final place


@pytest.mark.slow
def test_non_editable_kingpost_installs_a_wheel_of_itself(tmp_path: Path) -> None:
    from kingpost.isolated._install import find_installer
    from kingpost.isolated.wheel import write_kingpost_wheel

    if find_installer().name != "uv":
        pytest.skip("needs uv to make the outer environment quickly")
    uv = find_installer().command[0]
    wheel = write_kingpost_wheel(tmp_path)
    outer = tmp_path / "outer"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(outer)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(outer / "bin" / "python"), str(wheel), "uv"],
                   check=True)
    bundle = copy("echo", tmp_path / "echo", python_version=HERE)
    result = kingpost("predict", str(bundle), "-d", "3", "--isolated", cache=tmp_path / "cache",
                      python=str(outer / "bin" / "python"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 3
    assert "(wheel of the running installation)" in result.stderr


# -- reading installer failures (captured from real uv and pip runs) --------------------------------

UV_NOT_FOUND = """Using Python 3.11.7 environment at: /tmp/x
error: No solution found when resolving dependencies
  cause: Because this-package-does-not-exist-kingpost was not found in the package registry and you require \
this-package-does-not-exist-kingpost==1.0, we can conclude that your requirements are unsatisfiable."""
UV_NO_VERSION = """  \u00d7 No solution found when resolving dependencies:
  ╰─▶ Because there is no version of text-unidecode==99 and you require text-unidecode==99, we can conclude \
that your requirements are unsatisfiable."""
PIP_NOT_FOUND = """Looking in links: /opt/wheels
ERROR: Could not find a version that satisfies the requirement this-package-does-not-exist-kingpost==1.0 \
(from versions: none)
ERROR: No matching distribution found for this-package-does-not-exist-kingpost==1.0"""
PIP_NO_VERSION = """ERROR: Could not find a version that satisfies the requirement text_unidecode==99 \
(from versions: 0.1, 1.0, 1.1, 1.2, 1.3)
ERROR: No matching distribution found for text_unidecode==99"""
REQUIREMENTS = ["text-unidecode==99", "this-package-does-not-exist-kingpost==1.0", "text==1"]


@pytest.mark.parametrize(("output", "failed", "reason"), [
    (UV_NOT_FOUND, REQUIREMENTS[1], "no package of that name is on the configured indexes"),
    (UV_NO_VERSION, REQUIREMENTS[0], "no version on the configured indexes matches it"),
    (PIP_NOT_FOUND, REQUIREMENTS[1], "no installable version of it is on the configured indexes"),
    (PIP_NO_VERSION, REQUIREMENTS[0],
     "no version on the configured indexes matches it (available: 0.1, 1.0, 1.1, 1.2, 1.3)"),
    ("error: Failed to fetch: `https://pypi.org/simple/x/`\n  Caused by: dns error", None, "dns error"),
])
def test_installer_failure_names_the_requirement(output: str, failed: str | None, reason: str) -> None:
    assert failure(output, REQUIREMENTS) == (failed, reason)


def test_environment_is_described_without_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINGPOST_CACHE_DIR", str(tmp_path))
    a = environment(copy("env_requirement", tmp_path / "a", python_version=HERE))
    b = environment(copy("env_requirement", tmp_path / "b", python_version=HERE, model_name="other"))
    assert a.path == b.path and a.path.parent == tmp_path / "envs"  # same definition, one environment
    local = environment(copy("env_requirement", tmp_path / "c", python_version=HERE, requirements=["./pkg"]))
    other = environment(copy("env_requirement", tmp_path / "d", python_version=HERE, requirements=["./pkg"]))
    assert local.path != other.path  # a local path means a different package in each bundle
    assert not (tmp_path / "envs").exists()

