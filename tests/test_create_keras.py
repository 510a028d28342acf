"""kingpost.create with Keras 3 (torch backend): a .keras file, KERAS_BACKEND set by the bundle itself."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import kingpost
from creating import assert_close, predict_fresh, predict_http, ruff_clean, started_server
from serving import Server

np = pytest.importorskip("numpy")
pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
# Keras reads KERAS_BACKEND once, on import; the servers this test starts must not inherit it.
_before = os.environ.get("KERAS_BACKEND")
os.environ["KERAS_BACKEND"] = "torch"
try:
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install 'kingpost[keras]')")
finally:
    if _before is None:
        del os.environ["KERAS_BACKEND"]
    else:
        os.environ["KERAS_BACKEND"] = _before

# Keras on torch with numpy 2 warns inside its own tensor conversion; nothing to do with kingpost.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ROWS = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported earlier with the {keras.backend.backend()} backend")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    path = tmp_path_factory.mktemp("keras") / "dense"
    kingpost.create(model, path, example_input=ROWS[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = model.predict(ROWS, verbose=0)
    return path, {"predictions": expected}


@pytest.fixture(scope="module")
def server(bundle: tuple[Path, Any]) -> Iterator[Server]:
    with started_server(bundle[0]) as server:
        yield server


def test_fresh_interpreter_answers_as_in_memory(bundle: tuple[Path, Any], server: Server, tmp_path: Path) -> None:
    path, expected = bundle
    [output] = predict_fresh([(path, {"inputs": ROWS.tolist()})], tmp_path)
    assert_close(output, expected)
    ruff_clean(path)


def test_http_answers_as_in_memory(bundle: tuple[Path, Any], server: Server) -> None:
    assert_close(predict_http(server, ROWS.tolist()), bundle[1])


def test_backend_is_written_into_the_bundle(bundle: tuple[Path, Any]) -> None:
    path, _ = bundle
    config = yaml.safe_load((path / "config.yaml").read_text())
    assert config["environment_variables"] == {"KERAS_BACKEND": "torch"}
    assert {r.split("==")[0] for r in config["requirements"]} >= {"keras", "torch", "numpy"}
    assert (path / "data" / "model.keras").is_file()
