"""Find an installed Python interpreter by minor version.

Looked for in this order: the interpreter kingpost runs on, ``python3.X`` on PATH (pyenv shims
skipped: they fail for every version but the selected one), pyenv's versions, uv's managed
installations. Each candidate is asked for its version, so a stale link is never trusted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kingpost.config import PYTHON_VERSIONS


@dataclass(frozen=True)
class Interpreter:
    path: Path  # symlinks resolved, so the same interpreter always hashes the same
    version: str  # "3.11.7"

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def find_interpreter(minor: int) -> Interpreter | None:
    """The first working CPython 3.<minor> found, or None."""
    if sys.version_info[:2] == (3, minor):
        base = Path(getattr(sys, "_base_executable", "") or sys.executable)
        if base.is_file():
            return Interpreter(base.resolve(), ".".join(map(str, sys.version_info[:3])))
    seen: set[Path] = set()
    for candidate in _candidates(minor):
        real = candidate.resolve()
        if real in seen or not os.access(real, os.X_OK):
            continue
        seen.add(real)
        version = _probe(real)
        if version is not None and version.split(".")[:2] == ["3", str(minor)]:
            return Interpreter(real, version)
    return None


def installed_interpreters() -> list[Interpreter]:
    """One interpreter per minor version kingpost bundles may ask for, where one is installed."""
    found = (find_interpreter(int(v[3:])) for v in PYTHON_VERSIONS)
    return [i for i in found if i is not None]


def _candidates(minor: int) -> Iterator[Path]:
    name = f"python3.{minor}"
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and "shims" not in Path(entry).parts:
            path = Path(entry) / name
            if path.is_file():
                yield path
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    yield from _newest_first(pyenv.glob(f"3.{minor}.*/bin/{name}"), rf"3\.{minor}\.(\d+)$", depth=2)
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    uv = Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or data_home / "uv" / "python")
    yield from _newest_first(uv.glob(f"cpython-3.{minor}.*/bin/{name}"), rf"cpython-3\.{minor}\.(\d+)-", depth=2)


def _newest_first(paths: Iterator[Path], pattern: str, *, depth: int) -> list[Path]:
    """Installations whose directory (``depth`` levels above the executable) matches ``pattern``,
    highest patch release first; free-threaded and pre-release builds do not match."""
    ranked = []
    for path in paths:
        match = re.match(pattern, path.parents[depth - 1].name)
        if match:
            ranked.append((int(match.group(1)), path))
    return [path for _, path in sorted(ranked, reverse=True)]


def _probe(path: Path) -> str | None:
    try:
        result = subprocess.run(
            [str(path), "-I", "-S", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    version = result.stdout.strip()
    return version if result.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+", version) else None
