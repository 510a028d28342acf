"""kingpost.create with LightGBM: the text format in data/, class labels kept for LGBMClassifier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import kingpost
from creating import (
    Cases,
    assert_fresh_matches,
    assert_http_matches,
    started_server,
)
from serving import Server

np = pytest.importorskip("numpy")
lgb = pytest.importorskip("lightgbm", reason="lightgbm is not installed (pip install 'kingpost[lightgbm]')")

RNG = np.random.default_rng(2)
X = RNG.normal(size=(120, 4))
ROWS = X[:6]
LABELS = np.array(["no", "yes"])[(X[:, 0] > 0).astype(int)]
THREE = np.array([3, 7, 11])[(X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    root = tmp_path_factory.mktemp("lightgbm")
    params = {"n_estimators": 10, "min_child_samples": 5, "verbose": -1}
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(X, label=X[:, 0] * 2 + X[:, 3]), num_boost_round=10)
    binary = lgb.LGBMClassifier(**params).fit(X, LABELS)
    multi = lgb.LGBMClassifier(**params).fit(X, THREE)
    regressor = lgb.LGBMRegressor(**params).fit(X, X[:, 1])
    for name, model in (("booster", booster), ("binary", binary), ("multi", multi), ("regressor", regressor)):
        kingpost.create(model, root / name)
    return {
        "booster": (root / "booster", ROWS.tolist(), {"predictions": booster.predict(ROWS)}),
        "binary": (root / "binary", {"inputs": ROWS.tolist()},
                   {"predictions": binary.predict(ROWS), "probabilities": binary.predict_proba(ROWS)}),
        "multi": (root / "multi", ROWS.tolist(),
                  {"predictions": multi.predict(ROWS), "probabilities": multi.predict_proba(ROWS)}),
        "regressor": (root / "regressor", ROWS.tolist(), {"predictions": regressor.predict(ROWS)}),
    }


@pytest.fixture(scope="module")
def server(cases: Cases) -> Iterator[Server]:
    with started_server(cases["binary"][0]) as server:
        yield server


def test_fresh_interpreter_answers_as_in_memory(cases: Cases, server: Server, tmp_path: Path) -> None:
    assert_fresh_matches(cases, tmp_path)


def test_http_answers_as_in_memory(cases: Cases, server: Server) -> None:
    assert_http_matches(server, cases["binary"])


def test_text_format_and_labels(cases: Cases) -> None:
    path = cases["binary"][0]
    assert (path / "data" / "model.txt").read_text().startswith("tree")
    assert "CLASSES = ['no', 'yes']" in (path / "model" / "model.py").read_text()
