"""`python bench/run.py --setup`: build the comparison venvs and Truss contexts, idempotently.

bench/.venvs/truss         the truss CLI (builds contexts)
bench/.venvs/truss-server  Truss's model server requirements, as its Dockerfile installs them
bench/.venvs/litserve      litserve (uvicorn[standard] brings uvloop and httptools), numpy
bench/.venvs/mlserver      Seldon MLServer 1.x, for the v2 case
kingpost and the bare ASGI apps run from the dev venv (the one kingpost is installed in), which also needs wrk on
PATH (Debian: apt-get install wrk).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from . import truss_context
from .cases import Case
from .paths import DEV_PYTHON, DEV_UV, VENVS, venv_python

VENV_PACKAGES = {
    "truss": ["truss"],
    "truss-server": [],  # filled from each build context's requirements.txt
    "litserve": ["litserve", "numpy"],  # numpy for the batched case
    "mlserver": ["mlserver>=1,<2"],  # the v2 case (its echo runtime: apps/mlserver/echo)
}


def _log(message: str) -> None:
    print(f"[setup] {message}", file=sys.stderr, flush=True)


def ensure_venv(name: str, packages: list[str]) -> None:
    python = venv_python(name)
    if not python.exists():
        _log(f"creating {VENVS / name}")
        # The dev venv's interpreter (3.11) matches the bundles' python_version: py311.
        subprocess.run([str(DEV_UV), "venv", "-q", "--python", str(DEV_PYTHON), str(VENVS / name)], check=True)
    if packages:
        # uv skips what is already satisfied, so rerunning is cheap.
        subprocess.run([str(DEV_UV), "pip", "install", "-q", "--python", str(python), *packages], check=True)


def setup(cases: list[Case]) -> None:
    if shutil.which("wrk") is None:
        _log("wrk is not on PATH: install it (Debian: apt-get install wrk)")
    for name, packages in VENV_PACKAGES.items():
        ensure_venv(name, packages)
    for case in cases:
        if not (case.bundle / "config.yaml").is_file():
            continue
        _log(f"truss build context for {case.name}")
        truss_context.build(case)
        truss_context.install_requirements(case)
    _log("done")
