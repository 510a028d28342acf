"""Train a 10-tree xgboost classifier on scikit-learn's breast cancer data; save it as xgboost JSON.

Run from anywhere:  python examples/tabular-xgboost/train.py   (needs scikit-learn; ~1 s)

The saved model (data/model.json) carries its own feature names and, as a booster attribute, the
class labels, so model.py needs only xgboost and numpy. Also writes examples.yaml from held-out rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xgboost

HERE = Path(__file__).resolve().parent
MODEL = HERE / "data" / "model.json"
EXAMPLES = HERE / "examples.yaml"
SEED = 0
PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": SEED, "nthread": 1}
ROUNDS = 10  # one tree per round for a binary objective


def dataset() -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feature names, class labels, X_train, X_test, y_train, y_test (fixed 75/25 split)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=SEED, stratify=data.target
    )
    return list(data.feature_names), list(data.target_names), x_train, x_test, y_train, y_test


def record(names: list[str], row: np.ndarray) -> dict[str, float]:
    """One row as the JSON object a caller would send: feature name -> value."""
    return {name: float(value) for name, value in zip(names, row, strict=True)}


def main() -> None:
    names, labels, x_train, x_test, y_train, y_test = dataset()
    train = xgboost.DMatrix(x_train, label=y_train, feature_names=names)
    booster = xgboost.train(PARAMS, train, num_boost_round=ROUNDS)
    booster.set_attr(labels=json.dumps(labels))
    MODEL.parent.mkdir(exist_ok=True)
    booster.save_model(MODEL)

    p = booster.predict(xgboost.DMatrix(x_test, feature_names=names))
    accuracy = float(np.mean((p >= 0.5) == y_test))
    print(f"held-out accuracy {accuracy:.4f} on {len(y_test)} rows; wrote {MODEL}")

    # examples.yaml: two held-out rows, one of each class, plus one sending only the ten "worst ..."
    # features (the trees split mostly on those; the other twenty arrive as NaN).
    first = [int(np.flatnonzero(y_test == c)[0]) for c in (0, 1)]
    full = record(names, x_test[first[1]])
    partial = {name: value for name, value in full.items() if name.startswith("worst ")}
    examples = [
        ("two_patients", {"records": [record(names, x_test[i]) for i in first]}),
        ("worst_only", {"records": [partial]}),
    ]
    lines = ["# Held-out rows of load_breast_cancer (written by train.py).", ""]
    for name, value in examples:
        lines += [f"- name: {name}", f"  input: {json.dumps(value)}"]  # JSON is valid YAML
    EXAMPLES.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
