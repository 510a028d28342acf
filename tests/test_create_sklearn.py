"""kingpost.create with scikit-learn: joblib in data/, predict_proba in the answer, hooks copied in.

Each bundle is served by a fresh interpreter (and one over HTTP) and must answer exactly what
the model in memory answers.
"""

from __future__ import annotations

import sys
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
pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'kingpost[sklearn]')")

from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 4))
Y_CLASS = np.array(["setosa", "versicolor", "virginica"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
Y_VALUE = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1
ROWS = X[:5]
SCALE = 10.0


def from_percent(request: dict[str, Any]) -> Any:
    """A hook with a constant, a module and a helper function from this file."""
    return np.asarray(request["percent"]) / SCALE / hundred()


def hundred() -> float:
    return 10.0


CLIP = """
class Clip(TransformerMixin, BaseEstimator):
    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return np.clip(x, -1.5, 1.5)
"""


class Case:
    def __init__(self, path: Path, request: Any, expected: Any) -> None:
        self.path, self.request, self.expected = path, request, expected


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("sklearn")
    out: dict[str, Case] = {}

    classifier = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y_CLASS)
    kingpost.create(classifier, root / "classifier", example_input=ROWS)
    out["classifier"] = Case(root / "classifier", {"inputs": ROWS.tolist()},
                             {"predictions": classifier.predict(ROWS), "probabilities": classifier.predict_proba(ROWS)})

    regressor = LinearRegression().fit(X, Y_VALUE)
    kingpost.create(regressor, root / "regressor", name="prices")
    out["regressor"] = Case(root / "regressor", ROWS.tolist(), {"predictions": regressor.predict(ROWS)})

    kingpost.create(classifier, root / "hooks", preprocess=from_percent,
                    postprocess=lambda out: {"label": out["predictions"][0], "p": np.max(out["probabilities"])})
    percent = (ROWS[:1] * 100).tolist()
    out["hooks"] = Case(root / "hooks", {"percent": percent},
                        {"label": classifier.predict(ROWS[:1])[0], "p": classifier.predict_proba(ROWS[:1]).max()})

    notebook = {"__name__": "__main__", "np": np, "BaseEstimator": BaseEstimator, "TransformerMixin": TransformerMixin}
    exec(CLIP, notebook)  # a class of the user's own, defined in a notebook: it lives in __main__
    clipped = make_pipeline(notebook["Clip"](), LogisticRegression()).fit(X, Y_CLASS)
    with pytest.warns(UserWarning, match="cloudpickle"):
        kingpost.create(clipped, root / "main_class")
    out["main_class"] = Case(root / "main_class", ROWS.tolist(),
                             {"predictions": clipped.predict(ROWS), "probabilities": clipped.predict_proba(ROWS)})
    return out


@pytest.fixture(scope="module")
def server(cases: dict[str, Case]) -> Iterator[Server]:
    with started_server(cases["classifier"].path) as server:
        yield server


def test_fresh_interpreter_answers_as_in_memory(cases: dict[str, Case], server: Server, tmp_path: Path) -> None:
    outputs = predict_fresh([(c.path, c.request) for c in cases.values()], tmp_path)
    for case, output in zip(cases.values(), outputs, strict=True):
        assert_close(output, case.expected, case.path.name)
    ruff_clean(*(c.path for c in cases.values()))


def test_http_answers_as_in_memory(cases: dict[str, Case], server: Server) -> None:
    case = cases["classifier"]
    assert_close(predict_http(server, case.request), case.expected)



def test_config_pins_what_is_installed(cases: dict[str, Case]) -> None:
    from importlib.metadata import version

    config = yaml.safe_load((cases["classifier"].path / "config.yaml").read_text())
    assert config["model_metadata"]["framework"] == "sklearn"
    assert config["model_metadata"]["created_by"] == f"kingpost {kingpost.__version__}"
    assert config["python_version"] == f"py{sys.version_info[0]}{sys.version_info[1]}"
    assert f"scikit-learn=={version('scikit-learn')}" in config["requirements"]
    assert f"joblib=={version('joblib')}" in config["requirements"]
    assert (cases["classifier"].path / "data" / "model.joblib").is_file()
    assert yaml.safe_load((cases["regressor"].path / "config.yaml").read_text())["model_name"] == "prices"
    main_class = yaml.safe_load((cases["main_class"].path / "config.yaml").read_text())
    assert main_class["model_metadata"]["format"] == "cloudpickle"
    assert any(r.startswith("cloudpickle==") for r in main_class["requirements"])


def test_example_input_is_written_as_lists(cases: dict[str, Case], load: Any) -> None:
    bundle = load(cases["classifier"].path)
    assert bundle.examples() == {"example": ROWS.tolist()}
    assert_close(bundle.predict(example="example"), cases["classifier"].expected)


def test_hooks_are_copied_as_source(cases: dict[str, Case]) -> None:
    source = (cases["hooks"].path / "model" / "model.py").read_text()
    assert "def from_percent(request" in source
    assert "def hundred()" in source
    assert "SCALE = 10.0" in source
    assert "def postprocess_output(out):" in source
    assert "return features(from_percent(model_input))" in source


def test_named_columns_take_records(tmp_path: Path, load: Any) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = LogisticRegression().fit(frame, Y_CLASS)
    kingpost.create(model, tmp_path / "named")
    records = frame.iloc[:3].to_dict(orient="records")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        output = load(tmp_path / "named").predict({"inputs": records})
    first = frame.iloc[:3]
    assert_close(output, {"predictions": model.predict(first), "probabilities": model.predict_proba(first)})
