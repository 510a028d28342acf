"""Shared fixtures. Keep this file small: a fixture belongs here only when several test files use it.

Bundles used by tests live in ``tests/bundles/<behaviour>/``, one behaviour each (see their
docstrings). Tests that change a bundle (write a pickle into ``data/``, override a config key)
work on a copy made by :func:`copy_bundle`, never on the original.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from serving import Server, serving

BUNDLES = Path(__file__).parent / "bundles"


def bundle_path(name: str) -> Path:
    """The path of ``tests/bundles/<name>``, which must exist."""
    path = BUNDLES / name
    assert (path / "config.yaml").is_file(), f"no test bundle {name!r}"
    return path


@pytest.fixture(autouse=True)
def _no_ambient_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Secrets come only from what a test sets: an empty secrets dir, no ``*_SECRET_*`` variables."""
    import os

    for name in list(os.environ):
        if name.startswith(("KINGPOST_SECRET_", "TRUSS_SECRET_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KINGPOST_SECRETS_DIR", str(tmp_path_factory.mktemp("no-secrets")))


@pytest.fixture
def copy_bundle(tmp_path: Path) -> Callable[..., Path]:
    """``copy_bundle(name, **config)`` copies a test bundle into tmp_path (with the directories its
    config.yaml lists under external_package_dirs, beside it) and returns the copy.

    Keyword arguments are merged into its config.yaml (mappings merge key by key), for example
    ``copy_bundle("predict_counter", runtime={"predict_concurrency": 2})``.
    """

    def copy(name: str, **config: Any) -> Path:
        source, target = bundle_path(name), tmp_path / name
        shutil.copytree(source, target)
        listed = (yaml.safe_load((source / "config.yaml").read_text()) or {}).get("external_package_dirs", [])
        for relative in listed:  # beside the copy, as beside the original, so the relative path holds
            if not (target / relative).resolve().exists():
                shutil.copytree((source / relative).resolve(), (target / relative).resolve())
        if config:
            path = target / "config.yaml"
            data = yaml.safe_load(path.read_text()) or {}
            path.write_text(yaml.safe_dump(_merge(data, config), sort_keys=False))
        return target

    return copy


@pytest.fixture
def load() -> Iterator[Callable[..., Any]]:
    """``load(path_or_name, **kwargs)`` is ``kingpost.load``; every bundle it opened is closed afterwards.

    A bare name (no slash) means ``tests/bundles/<name>``.
    """
    import kingpost

    opened: list[Any] = []

    def open_bundle(where: str | Path, **kwargs: Any) -> Any:
        path = bundle_path(where) if isinstance(where, str) and "/" not in where else Path(where)
        bundle = kingpost.load(path, **kwargs)
        opened.append(bundle)
        return bundle

    yield open_bundle
    for bundle in opened:
        bundle.close()


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``serve(bundle, *cli_args, wait="ready")`` runs ``kingpost serve`` on a free port (see tests/serving.py).

    A bare name means ``tests/bundles/<name>``. Returns a ``serving.Server``; each is stopped afterwards.
    """
    from serving import start

    servers: list[Server] = []

    def run(where: str | Path, *args: str, **kwargs: Any) -> Server:
        path = bundle_path(where) if isinstance(where, str) and "/" not in where else Path(where)
        server = start(path, *args, stderr_dir=tmp_path, **kwargs)
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def echo() -> Iterator[Server]:
    """A server on tests/bundles/server_echo, one per test module that asks for it."""
    with serving(bundle_path("server_echo")) as server:
        yield server


@pytest.fixture(scope="module")
def client(echo: Server) -> Iterator[httpx.Client]:
    """An HTTP client for ``echo`` (a module may define its own ``client`` for another server)."""
    with httpx.Client(base_url=echo.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server the tests start themselves (tests/postgres.py); skipped without its binaries."""
    import tempfile

    from postgres import Postgres, binaries

    if binaries() is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (Debian: apt-get install postgresql)")
    # Not under pytest's basetemp: as root the server runs as nobody, who cannot enter /tmp/pytest-of-root.
    base = Path(tempfile.mkdtemp(prefix="kingpost-pg-"))
    server = Postgres(base)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
