"""Secrets, resolved per name at the moment they are read (so a rotated file is seen).

Order: env ``KINGPOST_SECRET_<name>`` or ``TRUSS_SECRET_<name>``, then the file
``<secrets dir>/<name>``, then the config default. Values are never logged or printed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from kingpost import defaults

ENV_PREFIXES = ("KINGPOST_SECRET_", "TRUSS_SECRET_")


def secrets_dir_from_env(explicit: str | Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get("KINGPOST_SECRETS_DIR", defaults.SECRETS_DIR))


class SecretStore(Mapping[str, "str | None"]):
    """The ``secrets`` a Model receives: only the names declared in config.yaml."""

    def __init__(self, declared: Mapping[str, str | None], secrets_dir: str | Path | None = None) -> None:
        self._declared = dict(declared)
        self._dir = secrets_dir_from_env(secrets_dir)

    def __getitem__(self, name: str) -> str | None:
        if name not in self._declared:
            raise KeyError(f"secret {name!r} is not declared under 'secrets' in config.yaml")
        for prefix in ENV_PREFIXES:
            value = os.environ.get(prefix + name)
            if value is not None:
                return value
        path = self._dir / name
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return self._declared[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._declared)

    def __len__(self) -> int:
        return len(self._declared)

    def __repr__(self) -> str:  # never show values
        return f"SecretStore(names={sorted(self._declared)!r})"
