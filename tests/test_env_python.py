"""python_version older than kingpost runs on (py38, py39): the nearest newer interpreter, one warning, --python."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kingpost.isolated._python import installed_interpreters


def kingpost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kingpost", *args], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())


def supported() -> list[str]:
    return [i.version for i in installed_interpreters() if tuple(map(int, i.minor.split("."))) >= (3, 10)]


@pytest.mark.parametrize("wanted", ["py38", "py39"])
def test_old_python_uses_the_nearest_newer_with_one_warning(copy_bundle: Callable[..., Path], wanted: str) -> None:
    if not supported():
        pytest.skip("no Python 3.10+ found by kingpost here")
    bundle = copy_bundle("echo", python_version=wanted)
    result = kingpost("env", str(bundle))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "warning" in line]
    assert warnings == [f"kingpost: warning: {bundle.resolve()} asks for python_version {wanted}, older than "
                        f"kingpost runs on; using Python {supported()[0]}, the nearest installed (choose another "
                        "with --python)."]
    assert f"python        {supported()[0]}" in result.stdout


def test_python_flag_chooses_the_interpreter(copy_bundle: Callable[..., Path]) -> None:
    if len(supported()) < 2:
        pytest.skip("needs two Python 3.10+ interpreters")
    chosen = supported()[-1]
    bundle = copy_bundle("echo", python_version="py38")
    result = kingpost("env", str(bundle), "--python", ".".join(chosen.split(".")[:2]))
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stdout + result.stderr
    assert f"python        {chosen}" in result.stdout
    bad = kingpost("env", str(bundle), "--python", "3.9")
    assert bad.returncode == 1
    assert bad.stderr == "error: --python: expected Python 3.10 or newer (kingpost's minimum), found '3.9'.\n"
    alone = kingpost("serve", str(bundle), "--python", "3.11")
    assert alone.returncode == 2 and "give --isolated too" in alone.stderr
