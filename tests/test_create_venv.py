"""The pins kingpost.create writes are enough: a fresh environment built from them alone serves the bundle.

``kingpost predict DIR --isolated`` builds a virtual environment from the bundle's requirements
(and kingpost itself) and predicts there; the answer must equal the model's in memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kingpost
from creating import assert_close, clean_env

pytestmark = pytest.mark.slow
np = pytest.importorskip("numpy")

RNG = np.random.default_rng(6)
X = RNG.normal(size=(50, 3))
Y = (X[:, 0] > 0).astype(int)
ROWS = X[:4]


def isolated_predict(bundle: Path, request: Any, cache: Path) -> Any:
    env = {**clean_env(), "KINGPOST_CACHE_DIR": str(cache)}
    result = subprocess.run([sys.executable, "-m", "kingpost", "predict", str(bundle), "--isolated",
                             "-d", json.dumps(request)], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sklearn_bundle_runs_on_its_pins_alone(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)
    kingpost.create(model, tmp_path / "forest")
    output = isolated_predict(tmp_path / "forest", {"inputs": ROWS.tolist()}, tmp_path / "cache")
    assert_close(output, {"predictions": model.predict(ROWS), "probabilities": model.predict_proba(ROWS)})


def test_xgboost_bundle_runs_on_its_pins_alone(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost", reason="xgboost is not installed")
    model = xgb.XGBClassifier(n_estimators=10, max_depth=2).fit(X, Y)
    kingpost.create(model, tmp_path / "boosted")
    output = isolated_predict(tmp_path / "boosted", ROWS.tolist(), tmp_path / "cache")
    assert_close(output, {"predictions": model.predict(ROWS), "probabilities": model.predict_proba(ROWS)})
