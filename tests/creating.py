"""Helpers for the ``kingpost.create`` tests: serve a created bundle where nothing of the test leaks in.

    with started_server(bundle_dir) as server:              # python -m kingpost serve, loading meanwhile
        outputs = predict_fresh([(bundle_dir, request), ...], tmp)  # kingpost.load(dir).predict in a new Python
        served = predict_http(server, request)              # one POST once it is ready
    assert_close(outputs[0], in_memory_output)              # np.allclose, through dicts and lists

Both run without the variables that bundles set for themselves (KERAS_BACKEND, HF_HUB_OFFLINE),
so a bundle that forgot them fails here.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from serving import Server, start

_SCRIPT = """\
import json, sys
import kingpost
cases = json.load(open(sys.argv[1]))
outputs = [kingpost.load(path).predict(request) for path, request in cases]
json.dump(outputs, open(sys.argv[2], "w"))
"""
Cases = dict[str, tuple[Path, Any, Any]]  # name -> (bundle directory, request, the in-memory model's answer)
_BUNDLE_SET = ("KERAS_BACKEND", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _BUNDLE_SET and k != "PYTHONPATH"}


def predict_fresh(cases: list[tuple[Path, Any]], tmp: Path, timeout: float = 180) -> list[Any]:
    """Predict each request with its bundle, all in one new interpreter; the outputs in order."""
    cases_file, out_file = tmp / "cases.json", tmp / "outputs.json"
    cases_file.write_text(json.dumps([[str(path), request] for path, request in cases]))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(cases_file), str(out_file)], capture_output=True,
                          text=True, timeout=timeout, env=clean_env(), cwd=tmp)
    assert proc.returncode == 0, f"the fresh interpreter failed:\n{proc.stderr}"
    return json.loads(out_file.read_text())  # type: ignore[no-any-return]


@contextlib.contextmanager
def started_server(bundle: Path, timeout: float = 120) -> Iterator[Server]:
    """``python -m kingpost serve bundle``, returned once bound: the model loads while the test goes on.

    Start it before :func:`predict_fresh` and the two interpreters import their frameworks side by side.
    """
    assert not set(_BUNDLE_SET) & set(os.environ), "unset these: the server inherits the test's environment"
    server = start(bundle, wait="bound", timeout=timeout)
    try:
        yield server
    finally:
        server.stop()
        server.stderr_path.unlink(missing_ok=True)


def predict_http(server: Server, request: Any, timeout: float = 180) -> Any:
    """Wait until ``server`` is ready, POST ``request`` to its predict path, and return the JSON answer."""
    server.wait_status("/v1/models/model", 200, timeout)
    response = httpx.post(server.url + "/v1/models/model:predict", json=request, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def assert_close(actual: Any, expected: Any, path: str = "output") -> None:
    """``actual`` (JSON from a bundle) equals ``expected`` (in-memory, numpy allowed), floats within 1e-5."""
    if hasattr(expected, "tolist"):
        expected = expected.tolist()
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{path}: {actual!r} != {expected!r}"
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        if expected and all(isinstance(v, int | float) and not isinstance(v, bool) for v in expected):
            assert np.allclose(actual, expected, rtol=1e-5, atol=1e-6), f"{path}: {actual!r} != {expected!r}"
        else:
            for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
                assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert np.isclose(actual, expected, rtol=1e-5, atol=1e-6), f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def ruff_clean(*bundles: Path) -> None:
    """The generated model.py files pass ruff's pyflakes and pycodestyle rules (when ruff is installed)."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        return
    files = [str(b / "model" / "model.py") for b in bundles]
    files += [str(p) for b in bundles for p in (b / "packages").glob("*.py")]
    proc = subprocess.run([str(ruff), "check", "--no-cache", "--isolated", "--select", "E,F,W",
                           "--line-length", "120", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def assert_fresh_matches(cases: dict[str, tuple[Path, Any, Any]], tmp: Path) -> None:
    """Each case (bundle, request, in-memory answer) answers the same in one new interpreter; ruff-clean code."""
    outputs = predict_fresh([(path, request) for path, request, _ in cases.values()], tmp)
    for (name, (_, _, expected)), output in zip(cases.items(), outputs, strict=True):
        assert_close(output, expected, name)
    ruff_clean(*(path for path, _, _ in cases.values()))


def assert_http_matches(server: Server, case: tuple[Path, Any, Any]) -> None:
    """The served bundle answers the case's request as the in-memory model did."""
    _, request, expected = case
    assert_close(predict_http(server, request), expected)
