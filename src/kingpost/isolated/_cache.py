"""The environment cache on disk: one virtual environment per definition, built atomically.

    <cache>/py311-<hash>/                   a ready environment (a venv)
    <cache>/py311-<hash>/kingpost-env.json  its marker: written last, trusted only if its hash matches
    <cache>/.py311-<hash>.tmp-<pid>/        a build in progress, renamed into place when complete
    <cache>/.py311-<hash>.lock              held while building, so one build per definition runs
    <cache>/.py311-<hash>.log               the installer's output of the last failed build

<cache> is ``$KINGPOST_CACHE_DIR/envs``, else ``$XDG_CACHE_HOME/kingpost/envs``, else
``~/.cache/kingpost/envs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kingpost.errors import PackagingError
from kingpost.isolated._install import create_venv, failure, find_installer, install_command, run_install
from kingpost.isolated._python import Interpreter
from kingpost.types import Echo

MARKER = "kingpost-env.json"


@dataclass(frozen=True)
class Environment:
    """What defines one bundle's environment, and where it lives."""

    bundle_dir: Path
    name: str
    interpreter: Interpreter
    requirements: tuple[str, ...]  # the bundle's requirement lines
    requirement_args: tuple[str, ...]  # what the installer is given for them
    system_packages: tuple[str, ...]
    kingpost_project: Path | None  # the project directory of an editable kingpost, else None
    kingpost_description: str
    inputs: dict[str, Any]  # everything hashed
    digest: str
    path: Path
    note: str | None = None  # one warning line (an older python_version raised to one kingpost runs on)

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def cache_root() -> Path:
    if os.environ.get("KINGPOST_CACHE_DIR"):
        return Path(os.environ["KINGPOST_CACHE_DIR"]).expanduser() / "envs"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kingpost" / "envs"


def ensure(env: Environment, *, echo: Echo, rebuild: bool = False) -> Path:
    """Build the environment unless a complete one is there; return its Python."""
    if not rebuild and _ready(env):
        return env.python
    env.path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(env, echo):
        if rebuild:
            _remove(env.path)
        elif _ready(env):  # another process built it while this one waited
            return env.python
        for stale in env.path.parent.glob(f".{env.path.name}.tmp-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        if env.path.exists():
            echo(f"kingpost: removing the incomplete environment {env.path}")
            _remove(env.path)
        _build(env, echo)
    return env.python


def state(env: Environment) -> str:
    """absent, building (another process holds the lock), ready or broken."""
    if _ready(env):
        return "ready"
    lock = _lock_path(env)
    if lock.exists():
        import fcntl

        with open(lock, "a") as fd:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return "building"
    return "broken" if env.path.exists() else "absent"


def _build(env: Environment, echo: Echo) -> None:
    started = time.monotonic()
    installer = find_installer()
    n = len(env.requirements)
    echo(f"kingpost: building environment for {env.name} "
         f"(python {env.interpreter.minor}, {n} requirement{'' if n == 1 else 's'})...")
    tmp = env.path.with_name(f".{env.path.name}.tmp-{os.getpid()}")
    try:
        create_venv(installer, env.interpreter.path, tmp)
        with tempfile.TemporaryDirectory(prefix="kingpost-wheel-") as wheels:
            if env.kingpost_project is not None:
                kingpost = ["-e", str(env.kingpost_project)]
            else:
                from kingpost.isolated.wheel import write_kingpost_wheel

                kingpost = [str(write_kingpost_wheel(Path(wheels)))]
            what = ", ".join([*env.requirements, f"kingpost {env.kingpost_description}"])
            echo(f"kingpost:   installing {what} with {installer.name}")
            command, environ = install_command(installer, tmp / "bin" / "python", [*kingpost, *env.requirement_args])
            status, output = run_install(command, environ, cwd=env.bundle_dir, echo=echo, started=started)
        if status != 0:
            raise _install_error(env, output)
        _retarget(tmp, env.path)
        seconds = time.monotonic() - started
        marker = {"hash": env.digest, "inputs": env.inputs, "bundle": str(env.bundle_dir), "build_seconds": seconds,
                  "built_at": time.strftime("%Y-%m-%d %H:%M:%S"), "installer": installer.name}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        os.rename(tmp, env.path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    echo(f"kingpost: environment ready in {seconds:.1f} s ({env.path})")


def _install_error(env: Environment, output: str) -> PackagingError:
    log = env.path.with_name(f".{env.path.name}.log")
    log.write_text(output + "\n")
    failed, reason = failure(output, env.requirements)
    if failed is None:
        failed, reason = failure(output, ["kingpost"])
    if failed is None:
        return PackagingError(f"could not build the environment for bundle {env.bundle_dir}: {reason} "
                              f"(installer output: {log}).")
    return PackagingError(f"could not install requirement {failed!r} for bundle {env.bundle_dir}: {reason} "
                          f"(installer output: {log}).")


def _retarget(tmp: Path, final: Path) -> None:
    """Point scripts written during the build (shebangs, activate) at the final path."""
    for file in [*(tmp / "bin").iterdir(), tmp / "pyvenv.cfg"]:
        if file.is_symlink() or not file.is_file() or file.stat().st_size > 1 << 20:
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if str(tmp) in text:
            file.write_text(text.replace(str(tmp), str(final)), encoding="utf-8")


def read_marker(env: Environment) -> dict[str, Any]:
    """The marker of a built environment ({} when there is none or it is unreadable)."""
    try:
        data = json.loads((env.path / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ready(env: Environment) -> bool:
    return read_marker(env).get("hash") == env.digest and env.python.is_file()


def _lock_path(env: Environment) -> Path:
    return env.path.with_name(f".{env.path.name}.lock")


@contextlib.contextmanager
def _locked(env: Environment, echo: Echo) -> Iterator[None]:
    import fcntl

    with open(_lock_path(env), "a") as fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"kingpost: waiting for another process to finish building {env.path}...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield


def remove(env: Environment, echo: Echo) -> bool:
    """Delete the environment (waiting for a build of it to finish); False when there was none."""
    if not env.path.exists():
        return False
    with _locked(env, echo):
        _remove(env.path)
    return True


def _remove(path: Path) -> None:
    """Delete an environment: renamed away first, so no reader sees half of one."""
    if not path.exists():
        return
    trash = path.with_name(f".{path.name}.trash-{os.getpid()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
