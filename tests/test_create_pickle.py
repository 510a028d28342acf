"""kingpost.create with any other callable: cloudpickle, with a warning about what a pickle needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import kingpost
from creating import (
    Cases,
    assert_fresh_matches,
    assert_http_matches,
    started_server,
)
from serving import Server

np = pytest.importorskip("numpy")
pytest.importorskip("cloudpickle", reason="cloudpickle is not installed (pip install 'kingpost[pickle]')")

WEIGHTS = np.array([0.5, 2.0, -1.0])


def score(request: dict[str, Any]) -> dict[str, Any]:
    """A plain function; cloudpickle copies it, and WEIGHTS with it, by value (it is test code, not a package)."""
    x = np.asarray(request["x"], dtype=float)
    return {"score": x @ WEIGHTS, "n": len(x)}


class Threshold:
    def __init__(self, cut: float) -> None:
        self.cut = cut

    def __call__(self, values: list[float]) -> list[bool]:
        return [v > self.cut for v in values]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    root = tmp_path_factory.mktemp("pickle")
    with pytest.warns(UserWarning, match="cloudpickle: the bundle loads only with the same Python"):
        kingpost.create(score, root / "function", example_input={"x": [[1, 2, 3], [0, 0, 1]]})
    with pytest.warns(UserWarning, match="cloudpickle"):
        kingpost.create(Threshold(0.5), root / "object", postprocess=lambda flags: {"any": any(flags)})
    request = {"x": [[1, 2, 3], [0, 0, 1]]}
    return {
        "function": (root / "function", request, score(request)),
        "object": (root / "object", [0.1, 0.7], {"any": True}),
    }


@pytest.fixture(scope="module")
def server(cases: Cases) -> Iterator[Server]:
    with started_server(cases["function"][0]) as server:
        yield server


def test_fresh_interpreter_answers_as_in_memory(cases: Cases, server: Server, tmp_path: Path) -> None:
    assert_fresh_matches(cases, tmp_path)


def test_http_answers_as_in_memory(cases: Cases, server: Server) -> None:
    assert_http_matches(server, cases["function"])


def test_requirements_come_from_what_the_pickle_uses(cases: Cases) -> None:
    config = yaml.safe_load((cases["function"][0] / "config.yaml").read_text())
    assert {r.split("==")[0] for r in config["requirements"]} == {"cloudpickle", "numpy"}
    assert config["model_metadata"]["framework"] == "pickle"
