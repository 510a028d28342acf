"""A bundle's requirements: where they are written, and the names in a requirement line.

They come from config.yaml's ``requirements`` list or from ``requirements_file`` (a
requirements.txt, or a pyproject.toml's ``project.dependencies``). The loader names them when an
import fails, ``check`` compares them with what is installed, and isolated environments and containers install them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kingpost.config import Config
from kingpost.errors import ConfigError

# Distributions whose import name differs from the name in requirements.
_IMPORT_NAMES = {
    "scikit-learn": "sklearn", "pillow": "PIL", "opencv-python": "cv2", "opencv-python-headless": "cv2",
    "pyyaml": "yaml", "xgboost-cpu": "xgboost", "beautifulsoup4": "bs4", "protobuf": "google",
    "python-dateutil": "dateutil", "onnxruntime-gpu": "onnxruntime", "tf-keras": "keras",
}


def requirement_lines(bundle_dir: Path, config: Config) -> list[str]:
    """The bundle's requirements: the config list, or the lines of requirements_file."""
    if config.requirements_file is None:
        return [r for r in config.requirements if r.strip()]  # Truss ignores blank entries too
    file = bundle_dir / config.requirements_file
    if not file.is_file():
        raise ConfigError(config.path, "requirements_file", "an existing file in the bundle", config.requirements_file)
    if file.suffix == ".toml":
        return _pyproject_dependencies(file)
    lines = []
    for raw in file.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def _pyproject_dependencies(file: Path) -> list[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef,unused-ignore]
    try:
        data: dict[str, Any] = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", "valid TOML", f"<{exc}>") from None
    deps = data.get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ConfigError(file, "project.dependencies", "a list of requirement strings", deps)
    return deps


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement line (``torch==2.1; python_version>'3'`` -> ``torch``)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return match.group(1).lower().replace("_", "-") if match else requirement.strip().lower()


def requirement_import_name(requirement: str) -> str:
    dist = requirement_name(requirement)
    return _IMPORT_NAMES.get(dist, dist.replace("-", "_").replace(".", "_"))
