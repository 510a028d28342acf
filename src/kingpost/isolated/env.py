"""Isolated environments: run a bundle in a virtual environment built from its own requirements.

What defines an environment, and so the hash that names it in the cache (layout in ``_cache``):
the interpreter (version and path), the bundle's requirement lines, and kingpost's version and
source. An editable kingpost is installed editable from its project directory; any other from a
wheel of the running code, so the environment runs exactly the kingpost that built it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from kingpost.config import MIN_PYTHON, load_config
from kingpost.errors import PackagingError
from kingpost.isolated._cache import Environment, cache_root, ensure, read_marker, remove, state
from kingpost.isolated._python import Interpreter, find_interpreter, installed_interpreters
from kingpost.requirements import requirement_lines
from kingpost.types import Echo

__all__ = ["Environment", "ensure", "env_command", "environment", "run_isolated", "state"]

_FORMAT = 1  # bump when the layout of an environment changes
_LOCAL = (".", "/", "~", "-e", "--editable", "-r", "--requirement", "-c", "--constraint")  # lines naming paths


def environment(bundle_dir: Path, python: str | None = None) -> Environment:
    """Describe the environment of the bundle in ``bundle_dir``; nothing is built.

    ``python`` (``3.11``, ``py311``) overrides the bundle's python_version. A bundle asking for a
    Python older than kingpost runs (py38, py39) gets the nearest newer one installed, and the
    Environment's ``note`` says so in one line.
    """
    bundle_dir = Path(bundle_dir).resolve()
    config = load_config(bundle_dir)
    interpreter, note = _interpreter(bundle_dir, config.python_version, python)
    minor = int(interpreter.minor.split(".")[1])
    project, description, kingpost_inputs, requires_python = _kingpost_source()
    if requires_python and not _satisfies(interpreter.version, requires_python):
        raise PackagingError(f"bundle {bundle_dir} asks for python_version {config.python_version}, but kingpost "
                             f"needs Python {requires_python}, so it cannot run in that environment.")
    lines = tuple(requirement_lines(bundle_dir, config))
    options: list[str] = []
    args = lines
    if config.requirements_file and Path(config.requirements_file).suffix != ".toml":
        file = bundle_dir / config.requirements_file
        options = [s for s in (r.strip() for r in file.read_text(encoding="utf-8").splitlines()) if s.startswith("-")]
        args = ("-r", str(file))  # the installer honours its options (indexes, -e, -r, -c) too
    inputs: dict[str, Any] = {
        "format": _FORMAT,
        "python": {"version": interpreter.version, "path": str(interpreter.path)},
        "requirements": list(lines),
        "requirement_options": options,
        "kingpost": kingpost_inputs,
    }
    if any(line.startswith(_LOCAL) or "file:" in line for line in (*lines, *options)):
        inputs["bundle"] = str(bundle_dir)  # local paths mean different things in different bundles
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return Environment(
        bundle_dir=bundle_dir, name=config.model_name or bundle_dir.name, interpreter=interpreter, requirements=lines,
        requirement_args=args, system_packages=config.system_packages, kingpost_project=project,
        kingpost_description=description, inputs=inputs, digest=digest,
        path=cache_root() / f"py3{minor}-{digest[:16]}", note=note)


def _interpreter(bundle_dir: Path, wanted: str, chosen: str | None) -> tuple[Interpreter, str | None]:
    installed = installed_interpreters()
    names = ", ".join(i.version for i in installed) or "none"
    if chosen is not None:
        match = re.fullmatch(r"(?:py3|3\.?)(\d+)", chosen.strip())
        if match is None:
            raise PackagingError(f"--python: expected a version such as 3.11 or py311, found {chosen!r}.")
        minor = int(match.group(1))
        if (3, minor) < MIN_PYTHON:
            raise PackagingError(f"--python: expected Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer (kingpost's "
                                 f"minimum), found {chosen!r}.")
        found = find_interpreter(minor)
        if found is None:
            raise PackagingError(f"--python {chosen}: Python 3.{minor} is not installed here (installed: {names}).")
        return found, None
    minor = int(wanted[3:])
    if (3, minor) >= MIN_PYTHON:
        found = find_interpreter(minor)
        if found is None:
            raise PackagingError(
                f"bundle {bundle_dir} asks for python_version {wanted}, but Python 3.{minor} is not installed here "
                f"(installed: {names}); install it (uv python install 3.{minor}, or pyenv), choose one with "
                "--python, or change python_version.")
        return found, None
    newer = sorted((i for i in installed if tuple(map(int, i.minor.split("."))) >= MIN_PYTHON),
                   key=lambda i: tuple(map(int, i.minor.split("."))))
    if not newer:
        raise PackagingError(f"bundle {bundle_dir} asks for python_version {wanted}, older than kingpost runs on, "
                             f"and no Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ is installed here (installed: {names}).")
    return newer[0], (f"kingpost: warning: {bundle_dir} asks for python_version {wanted}, older than kingpost runs on; "
                      f"using Python {newer[0].version}, the nearest installed (choose another with --python).")


def run_isolated(bundle_dir: Path, argv: list[str], *, echo: Echo, python: str | None = None) -> int:
    """Run ``python -m kingpost <argv>`` in the bundle's environment, building it first if needed.

    On POSIX the command replaces this process (``os.execve``): stdin, stdout, stderr, signals
    (SIGTERM drains a server) and the exit status are the command's own, and this never returns.
    Elsewhere the command runs as a child process and its exit status is returned.
    """
    env = environment(bundle_dir, python)
    if env.note:
        echo(env.note)
    warn_missing_system_packages(env, echo)
    command = [str(ensure(env, echo=echo)), "-m", "kingpost", *argv]
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    child_env["VIRTUAL_ENV"] = str(env.path)
    child_env["PATH"] = os.pathsep.join([str(env.path / "bin"), os.environ.get("PATH", "")])
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(command[0], command, child_env)  # noqa: S606 - the argv list is ours, no shell
    return subprocess.call(command, env=child_env)


def env_command(bundle_dir: Path, *, rebuild: bool, clear: bool, echo: Echo, python: str | None = None) -> None:
    """``kingpost env``: show the bundle's environment; ``rebuild`` builds it afresh, ``clear`` deletes it."""
    env = environment(bundle_dir, python)
    if env.note:
        echo(env.note)
    if clear and not rebuild:
        echo(f"Removed environment {env.path}" if remove(env, echo) else f"No environment to remove at {env.path}")
        return
    warn_missing_system_packages(env, echo)
    if rebuild:
        ensure(env, echo=echo, rebuild=True)
    current = state(env)
    marker = read_marker(env) if current == "ready" else {}
    if current == "ready":
        check = subprocess.run([str(env.python), "-c", "import kingpost"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            last = (check.stderr.strip().splitlines() or [f"exit status {check.returncode}"])[-1]
            current = f"broken (its python cannot import kingpost: {last}; kingpost env {bundle_dir} --rebuild)"
    elif current in ("absent", "broken"):
        current += f" (built by the first --isolated run, or now by: kingpost env {bundle_dir} --rebuild)"
    echo(f"environment   {env.path}")
    echo(f"state         {current}")
    if marker:
        echo(f"built         {marker.get('built_at', '?')} in {marker.get('build_seconds', 0):.1f} s "
             f"with {marker.get('installer', '?')}")
    echo(f"python        {env.interpreter.version}  ({env.interpreter.path})")
    echo(f"kingpost      {env.kingpost_description}")
    for line in env.requirements or ("(none)",):
        echo(f"requirement   {line}")
    echo(f"hash          {env.digest}  (of: {', '.join(sorted(env.inputs))})")


def warn_missing_system_packages(env: Environment, echo: Echo) -> None:
    if not env.system_packages:
        return
    names = [re.split(r"[=<>\s]", p.strip(), maxsplit=1)[0] for p in env.system_packages]
    if shutil.which("dpkg-query"):
        result = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *names],
                                capture_output=True, text=True, check=False)
        installed = {f[0] for f in (line.split() for line in result.stdout.splitlines()) if f[1:2] == ["ii"]}
        missing = [n for n in names if n.split(":")[0] not in installed]
    else:
        missing = [n for n in names if shutil.which(n) is None]
    if missing:
        echo(f"kingpost: warning: system packages not installed here: {', '.join(missing)} "
             "(config.yaml system_packages; an isolated environment cannot install them, a container image can)")


def _kingpost_source() -> tuple[Path | None, str, dict[str, Any], str | None]:
    """(editable project dir or None, description, hash inputs, Requires-Python) of the running kingpost."""
    try:
        dist = metadata.distribution("kingpost")
    except metadata.PackageNotFoundError:
        raise PackagingError("kingpost is imported but not installed as a distribution, so an isolated "
                             "environment cannot install it; install it (pip install -e .).") from None
    info = json.loads(dist.read_text("direct_url.json") or "{}")
    requires_python = (dist.metadata.get_all("Requires-Python") or [None])[0]
    if info.get("dir_info", {}).get("editable"):
        project = Path(url2pathname(urlparse(info["url"]).path))
        return (project, f"{dist.version} (editable {project})",
                {"version": dist.version, "editable": str(project), "project": _project_table(project)},
                requires_python)
    record = hashlib.sha256((dist.read_text("RECORD") or "").encode()).hexdigest()
    return None, f"{dist.version} (wheel of the running installation)", {"version": dist.version, "record": record}, \
        requires_python


def _project_table(project: Path) -> dict[str, Any]:
    """What of an editable kingpost's pyproject.toml changes its environment: a code change does
    not (the install is editable), a new dependency does; a tool setting should not either."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef,unused-ignore]

    try:
        table = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, ValueError):
        return {}
    keys = ("dependencies", "requires-python")
    return {key: table.get(key) for key in keys}


def _satisfies(version: str, requires_python: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(requires_python).contains(version)
    except InvalidSpecifier:
        return True
