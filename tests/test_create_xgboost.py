"""kingpost.create with XGBoost: UBJ in data/, a DMatrix built for a Booster, wrappers answering as in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
xgb = pytest.importorskip("xgboost", reason="xgboost is not installed (pip install 'kingpost[xgboost]')")

RNG = np.random.default_rng(1)
X = RNG.normal(size=(80, 3)).astype(np.float32)
Y_BINARY = (X[:, 0] + X[:, 1] > 0).astype(int)
Y_THREE = (X[:, 0] > 0).astype(int) + (X[:, 2] > 0.5)
ROWS = X[:6]
NAMES = ["age", "income", "score"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Cases:
    root = tmp_path_factory.mktemp("xgboost")
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2},
                        xgb.DMatrix(X, label=Y_BINARY, feature_names=NAMES), num_boost_round=10)
    classifier = xgb.XGBClassifier(n_estimators=10, max_depth=2).fit(X, Y_THREE)
    regressor = xgb.XGBRegressor(n_estimators=10, max_depth=2).fit(X, X[:, 0] * 3)
    for name, model in (("booster", booster), ("classifier", classifier), ("regressor", regressor)):
        kingpost.create(model, root / name, example_input=ROWS)
    records = [dict(zip(NAMES, row, strict=True)) for row in ROWS.tolist()]
    return {
        "booster": (root / "booster", {"inputs": ROWS.tolist()},
                    {"predictions": booster.predict(xgb.DMatrix(ROWS, feature_names=NAMES))}),
        "booster_records": (root / "booster", records,
                            {"predictions": booster.predict(xgb.DMatrix(ROWS, feature_names=NAMES))}),
        "classifier": (root / "classifier", ROWS.tolist(),
                       {"predictions": classifier.predict(ROWS), "probabilities": classifier.predict_proba(ROWS)}),
        "regressor": (root / "regressor", {"instances": ROWS.tolist()}, {"predictions": regressor.predict(ROWS)}),
    }


@pytest.fixture(scope="module")
def server(cases: Cases) -> Iterator[Server]:
    with started_server(cases["classifier"][0]) as server:
        yield server


def test_fresh_interpreter_answers_as_in_memory(cases: Cases, server: Server, tmp_path: Path) -> None:
    assert_fresh_matches(cases, tmp_path)


def test_http_answers_as_in_memory(cases: Cases, server: Server) -> None:
    assert_http_matches(server, cases["classifier"])


def test_booster_bundle_builds_the_dmatrix(cases: Cases) -> None:
    path = cases["booster"][0]
    source = (path / "model" / "model.py").read_text()
    assert "return dmatrix(model_input)" in source and "xgb.DMatrix(rows, feature_names=FEATURES)" in source
    assert (path / "data" / "model.ubj").is_file()
    config = yaml.safe_load((path / "config.yaml").read_text())
    assert config["model_metadata"]["framework"] == "xgboost"
    assert any(r.split("==")[0] in ("xgboost", "xgboost-cpu") for r in config["requirements"])
    wrapper = (cases["classifier"][0] / "model" / "model.py").read_text()
    assert "xgb.XGBClassifier()" in wrapper and "predict_proba" in wrapper
