"""kingpost: bundle a model with its pre- and post-processing, and run it the same way everywhere.

    import kingpost
    bundle = kingpost.load("my-model")       # validate; nothing of the user's code runs yet
    bundle.predict({"inputs": [[1, 2]]})     # in-process: load once, pre -> predict -> post

Importing kingpost imports no heavy dependency: each name below is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kingpost import defaults
from kingpost._version import __version__

__all__ = [
    "AsyncClient",
    "Bundle",
    "BundleError",
    "Client",
    "ConfigError",
    "DeadlineExceeded",
    "InputError",
    "JobError",
    "KingpostError",
    "MissingRequirementError",
    "ModelError",
    "ModelLoadError",
    "NotReadyError",
    "PackagingError",
    "QueueFullError",
    "RequestError",
    "UnreachableError",
    "__version__",
    "client_disconnected",
    "create",
    "init",
    "load",
    "serve",
]

_LAZY = {
    "AsyncClient": "kingpost.client",
    "Bundle": "kingpost.bundle",
    "Client": "kingpost.client",
    "create": "kingpost.frameworks",
    "client_disconnected": "kingpost.disconnect",
    **{name: "kingpost.errors" for name in (
        "BundleError", "ConfigError", "DeadlineExceeded", "InputError", "JobError", "KingpostError",
        "MissingRequirementError", "ModelError", "ModelLoadError", "NotReadyError", "PackagingError",
        "QueueFullError", "RequestError", "UnreachableError")},
}

if TYPE_CHECKING:
    from pathlib import Path

    from kingpost.bundle import Bundle
    from kingpost.client import AsyncClient, Client
    from kingpost.disconnect import client_disconnected
    from kingpost.errors import (
        BundleError,
        ConfigError,
        DeadlineExceeded,
        InputError,
        JobError,
        KingpostError,
        MissingRequirementError,
        ModelError,
        ModelLoadError,
        NotReadyError,
        PackagingError,
        QueueFullError,
        RequestError,
        UnreachableError,
    )
    from kingpost.frameworks import create


def load(bundle_dir: str | Path, *, secrets_dir: str | Path | None = None, jobs: str | Path | None = None) -> Bundle:
    """Open the bundle in ``bundle_dir`` and validate its config; no user code runs yet.

    ``jobs`` is where :meth:`Bundle.submit` keeps async jobs: a directory (SQLite) or a
    ``postgresql://`` URL (default: ``KINGPOST_JOBS_DIR`` / ``KINGPOST_JOBS_DATABASE``).

    Raises :class:`ConfigError` (one sentence: file, key, expected, found) for a bad config.
    """
    from kingpost.bundle import Bundle

    return Bundle(bundle_dir, secrets_dir=secrets_dir, jobs=jobs)


def init(bundle_dir: str | Path) -> Bundle:
    """Scaffold a new bundle in ``bundle_dir`` (which must be new or empty) and open it."""
    from kingpost.bundle import Bundle
    from kingpost.scaffold import init as scaffold

    return Bundle(scaffold(bundle_dir))


def serve(bundle_dir: str | Path, *, host: str = defaults.HOST, port: int = defaults.PORT, **options: Any) -> int:
    """Serve the bundle over HTTP until SIGINT/SIGTERM (see ``kingpost serve --help``)."""
    from kingpost.server.run import serve as run

    return run(bundle_dir, host=host, port=port, **options)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kingpost' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
