"""Fixtures of the Truss compatibility suite: one bundle per behaviour in ``bundles/<behaviour>/``.

Test modules import what they use from here (a ``conftest.py`` here would shadow ``tests/conftest.py``,
which other tests import by that name). ``served(name)`` runs a server for a bundle once per test
module. With ``KINGPOST_COMPAT_SERVER=truss`` the same HTTP tests run against Truss's own server
instead (see ``truss_server.py``); tests marked ``@kingpost_only`` are then skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serving import start

COMPAT = Path(__file__).parent / "bundles"
TARGET = os.environ.get("KINGPOST_COMPAT_SERVER", "kingpost")


def compat(name: str) -> Path:
    path = COMPAT / name
    assert (path / "config.yaml").is_file(), f"no compat bundle {name!r}"
    return path


kingpost_only = pytest.mark.skipif(TARGET == "truss", reason="kingpost only (KINGPOST_COMPAT_SERVER=truss)")
"""A test of kingpost's own behaviour (in process, or beyond what Truss does): not run against Truss."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """``served(name, **env)``: a server on compat bundle ``name`` (kept for the whole module)."""
    servers: dict[str, Any] = {}

    def run(name: str, **env: str) -> Any:
        if name not in servers:
            if TARGET == "truss":
                from truss_server import start_truss

                servers[name] = start_truss(compat(name), tmp_path_factory.mktemp(name), env=env)
            else:
                servers[name] = start(compat(name), stderr_dir=tmp_path_factory.mktemp(name),
                                      env=env or None)
        return servers[name]

    yield run
    for server in servers.values():
        server.stop()


@pytest.fixture
def load_compat() -> Iterator[Callable[..., Any]]:
    """``load_compat(name)`` is ``kingpost.load`` of a compat bundle, closed afterwards."""
    import kingpost

    opened: list[Any] = []

    def open_bundle(name: str | Path) -> Any:
        bundle = kingpost.load(compat(name) if isinstance(name, str) else name)
        opened.append(bundle)
        return bundle

    yield open_bundle
    for bundle in opened:
        bundle.close()

