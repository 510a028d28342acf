"""The public API: exactly what ``kingpost`` exports, and that importing it stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import kingpost
from conftest import bundle_path

HEAVY = ("torch", "ray", "sklearn", "numpy", "starlette", "uvicorn", "fastapi", "httpx", "watchfiles", "rich")


def test_all_is_pinned() -> None:
    # Changing this list changes the public API: do it on purpose, with the docs.
    assert kingpost.__all__ == [
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
    assert sorted(dir(kingpost)) == sorted(kingpost.__all__)


@pytest.mark.parametrize("name", kingpost.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(kingpost, name) is not None


def test_exceptions_form_one_tree() -> None:
    for name in kingpost.__all__:
        value = getattr(kingpost, name) if name != "create" else None
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, kingpost.KingpostError), name
    assert issubclass(kingpost.MissingRequirementError, kingpost.ModelLoadError)
    assert issubclass(kingpost.ConfigError, kingpost.BundleError)
    for name in ("InputError", "NotReadyError", "QueueFullError", "DeadlineExceeded", "ModelError",
                 "UnreachableError"):
        assert issubclass(getattr(kingpost, name), kingpost.RequestError), name


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="module 'kingpost' has no attribute 'nope'"):
        kingpost.nope  # noqa: B018


IMPORTED = """
import json, sys
heavy = {heavy!r}
seen = {{}}
import kingpost
seen["import kingpost"] = [m for m in heavy if m in sys.modules]
kingpost.load, kingpost.Bundle, kingpost.KingpostError
seen["kingpost.load, kingpost.Bundle"] = [m for m in heavy if m in sys.modules]
bundle = kingpost.load({echo!r})
bundle.predict({{"x": 1}})
seen["an in-process predict"] = [m for m in heavy if m in sys.modules]
print(json.dumps(seen))
"""


def test_importing_kingpost_imports_nothing_heavy() -> None:
    code = IMPORTED.format(heavy=HEAVY, echo=str(bundle_path("echo")))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "import kingpost": [], "kingpost.load, kingpost.Bundle": [], "an in-process predict": []}
