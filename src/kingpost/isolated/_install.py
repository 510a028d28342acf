"""Create a virtual environment and install into it, with uv when available and pip otherwise.

uv does not read pip's configuration, so the indexes, find-links, constraints and certificate pip
would use (its config files, ``PIP_*`` variables) are handed to uv: a machine whose wheels live in
a local directory, or behind a proxy with its own CA, builds the same environment with either tool.
``KINGPOST_INSTALLER=pip`` (or ``uv``) forces the choice.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kingpost.errors import PackagingError
from kingpost.requirements import requirement_name
from kingpost.types import Echo

# Installer lines worth showing while a build runs (the rest goes to the log of a failed build).
_PROGRESS = re.compile(r"^\s*(Resolved|Prepared|Installed|Built|Downloading|Collecting|Successfully installed)\b")
_HEARTBEAT_S = 15.0


@dataclass(frozen=True)
class Installer:
    name: str  # "uv" or "pip"
    command: tuple[str, ...]  # the uv binary, or this Python's "-m pip"


def find_installer() -> Installer:
    wanted = os.environ.get("KINGPOST_INSTALLER", "").strip().lower()
    if wanted not in ("", "uv", "pip"):
        raise PackagingError(f"KINGPOST_INSTALLER must be 'uv' or 'pip', found {wanted!r}.")
    uv = _uv_binary() if wanted != "pip" else None
    if uv is not None:
        return Installer("uv", (uv,))
    if wanted == "uv":
        raise PackagingError("KINGPOST_INSTALLER=uv, but no uv was found (pip install uv).")
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, check=False)
    if pip.returncode != 0:
        raise PackagingError("building an isolated environment needs uv or pip, and neither was found "
                             "(pip install uv).")
    return Installer("pip", (sys.executable, "-m", "pip"))


def _uv_binary() -> str | None:
    try:
        from uv import find_uv_bin  # the uv wheel, installed next to kingpost

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def create_venv(installer: Installer, interpreter: Path, target: Path) -> None:
    if installer.name == "uv":
        command = [*installer.command, "venv", "--quiet", "--relocatable", "--python", str(interpreter), str(target)]
    else:  # pip installs from the outside (pip --python), so the venv needs no pip of its own
        command = [str(interpreter), "-m", "venv", "--without-pip", str(target)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise PackagingError(f"could not create a virtual environment with {interpreter}: "
                             f"{detail[-1] if detail else f'exit status {result.returncode}'}.")


def install_command(installer: Installer, python: Path, args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The command that installs ``args`` into the environment of ``python``, and its environment."""
    env = {**os.environ, "NO_COLOR": "1"}
    if installer.name == "pip":
        return [*installer.command, "--python", str(python), "install", "--no-compile", "--no-input",
                "--disable-pip-version-check", *args], env
    config = _pip_config()
    if config.get("cert") and not env.get("SSL_CERT_FILE"):
        env["SSL_CERT_FILE"] = config["cert"][0]
    return [*installer.command, "pip", "install", "--python", str(python), *_uv_options(config), *args], env


def run_install(command: list[str], env: dict[str, str], *, cwd: Path, echo: Echo,
                started: float) -> tuple[int, str]:
    """Run the installer, echoing its progress lines and a heartbeat; return (status, output)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace", env=env)
    lines: queue.Queue[str | None] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    output: list[str] = []
    try:
        while True:
            try:
                line = lines.get(timeout=_HEARTBEAT_S)
            except queue.Empty:
                echo(f"kingpost:   still installing ({time.monotonic() - started:.0f} s)...")
                continue
            if line is None:
                break
            output.append(line)
            if _PROGRESS.match(line):
                echo(f"kingpost:   {line.strip()}")
        return process.wait(), "\n".join(output)
    finally:
        if process.poll() is None:  # interrupted: stop the installer before its directory is removed
            process.kill()
            process.wait()


def _uv_options(config: dict[str, list[str]]) -> list[str]:
    """pip's index, extra indexes, find-links and constraints, as uv options."""
    options: list[str] = []
    for url in config.get("index-url", [])[:1]:
        options += ["--index-url", url]
    for url in config.get("extra-index-url", []):
        options += ["--extra-index-url", url]
    for link in config.get("find-links", []):
        options += ["--find-links", link]
    for file in config.get("constraint", []):
        options += ["--constraint", file]
    if (config.get("no-index") or ["false"])[0].lower() in ("1", "true", "yes", "on"):
        options.append("--no-index")
    if config.get("extra-index-url"):
        options += ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best version on any index
    return options


def _pip_config() -> dict[str, list[str]]:
    """pip's settings for ``pip install``, read as pip reads them (pip itself need not be installed):
    config files global, user, site then $PIP_CONFIG_FILE, their [global] then [install] sections,
    then ``PIP_*`` variables; a later value of a key replaces an earlier one."""
    files: list[Path] = []
    if os.environ.get("PIP_CONFIG_FILE") != os.devnull:
        dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
        files += [Path(d) / "pip" / "pip.conf" for d in dirs.split(os.pathsep) if d] + [Path("/etc/pip.conf")]
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        files += [Path.home() / ".pip" / "pip.conf", config_home / "pip" / "pip.conf", Path(sys.prefix) / "pip.conf"]
        if os.environ.get("PIP_CONFIG_FILE"):
            files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    parsers = []
    for file in files:
        parser = configparser.RawConfigParser()
        with contextlib.suppress(OSError, configparser.Error, UnicodeDecodeError):
            parser.read(file, encoding="utf-8")
            parsers.append(parser)
    values: dict[str, str] = {}
    for section in ("global", "install"):
        for parser in parsers:
            if parser.has_section(section):
                values.update((key.replace("_", "-"), value) for key, value in parser.items(section))
    values.update((name[4:].lower().replace("_", "-"), value) for name, value in os.environ.items()
                  if name.startswith("PIP_"))
    return {key: value.split() for key, value in values.items()}


def failure(output: str, requirements: Sequence[str]) -> tuple[str | None, str]:
    """(the requirement that failed or None, why) from the installer's output."""
    errors = [line.strip() for line in output.splitlines()
              if re.match(r"\s*(error:|ERROR:|\u00d7|cause:|Caused by:|[╰├]─▶)", line)]
    causes = [re.sub(r"^(cause:|Caused by:|[╰├]─▶)\s*", "", e) for e in errors
              if re.match(r"(cause:|Caused by:|[╰├]─▶)", e)]
    pip_not_found = [e for e in errors if "Could not find a version that satisfies" in e]
    reason = (pip_not_found or causes[-1:] or errors[-1:] or [output.strip().splitlines()[-1]
                                                               if output.strip() else "the installer failed"])[0]
    reason = re.sub(r"^(error:|ERROR:|\u00d7)\s*", "", reason)
    failed = _named(reason, requirements) or _named("\n".join(errors), requirements)
    return failed, _plain(reason, failed)


def _named(text: str, requirements: Sequence[str]) -> str | None:
    for line in sorted(requirements, key=lambda r: -len(requirement_name(r))):
        parts = re.split(r"[-_.]", requirement_name(line))
        pattern = r"(?<![\w.-])" + r"[-_.]".join(map(re.escape, parts)) + r"(?![\w-])"
        if re.search(pattern, text, re.IGNORECASE):
            return line
    return None


def _plain(reason: str, failed: str | None) -> str:
    if re.search(r"was not found in the package registry", reason):
        return "no package of that name is on the configured indexes"
    versions = re.search(r"from versions: ([^)]*)\)", reason)
    if versions:
        found = versions.group(1)
        return ("no installable version of it is on the configured indexes" if found == "none"
                else f"no version on the configured indexes matches it (available: {found})")
    if failed and re.search(r"there is no version of", reason):
        return "no version on the configured indexes matches it"
    reason = re.sub(r"^Because\s+", "", reason)
    reason = re.sub(r",? we can conclude that .*$", "", reason).rstrip(". ")
    return reason if len(reason) <= 300 else reason[:297] + "..."
