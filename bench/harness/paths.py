"""Where things live. Everything the harness builds stays under bench/ (gitignored)."""

from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
BUNDLES = BENCH / "bundles"
APPS = BENCH / "apps"
VENVS = BENCH / ".venvs"
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"

DEV_PYTHON = REPO / ".venv" / "bin" / "python"
DEV_UV = REPO / ".venv" / "bin" / "uv"


def venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"
