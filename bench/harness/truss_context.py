"""Truss build contexts: `truss image build-context` per bundle, cached by the bundle's hash.

The context holds Truss's server (server/main.py), the bundle's model/ and config.yaml, and the
requirements its Dockerfile would install (requirements.txt = Truss's server requirements plus the
bundle's own, with constraints.txt). We install those into bench/.venvs/truss-server and run the
server from the context directory, as the image's WORKDIR /app would.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from .cases import Case
from .paths import CACHE, DEV_UV, venv_python

STAMP = ".bench-bundle-hash"
INSTALLED_STAMP = ".bench-installed-hash"


def context_dir(case: Case) -> Path:
    return CACHE / "truss" / case.name


def bundle_hash(bundle: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in bundle.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(bundle)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def is_fresh(case: Case) -> bool:
    stamp = context_dir(case) / STAMP
    return stamp.is_file() and stamp.read_text() == bundle_hash(case.bundle)


def build(case: Case) -> Path:
    """Build (or reuse) the context for case's bundle; returns its directory."""
    target = context_dir(case)
    if is_fresh(case):
        return target
    truss = venv_python("truss").parent / "truss"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staging = Path(tmp) / "ctx"
        subprocess.run(
            [str(truss), "image", "build-context", str(staging), str(case.bundle)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (staging / STAMP).write_text(bundle_hash(case.bundle))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def install_requirements(case: Case) -> None:
    """Install the context's requirements into the truss-server venv, once per distinct file."""
    ctx = context_dir(case)
    requirements = ctx / "requirements.txt"
    constraints = ctx / "constraints.txt"
    # The Dockerfile installs with `-i https://pypi.org/simple`; drop index lines, use ours.
    lines = [
        ln
        for ln in requirements.read_text().splitlines()
        if not ln.strip().startswith(("-i", "--index-url", "--extra-index-url"))
    ]
    wanted = hashlib.sha256("\n".join(lines).encode() + constraints.read_bytes()).hexdigest()
    venv = venv_python("truss-server").parent.parent
    stamps = venv / INSTALLED_STAMP
    done = set(stamps.read_text().split()) if stamps.exists() else set()
    if wanted in done:
        return
    cleaned = ctx / "requirements.bench.txt"
    cleaned.write_text("\n".join(lines) + "\n")
    subprocess.run(
        [
            str(DEV_UV),
            "pip",
            "install",
            "-q",
            "--python",
            str(venv_python("truss-server")),
            "-r",
            str(cleaned),
            "-c",
            str(constraints),
        ],
        check=True,
    )
    stamps.write_text("\n".join(sorted(done | {wanted})) + "\n")
