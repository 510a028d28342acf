"""Tabular xgboost: callers send named fields; the booster wants a matrix in training column order.

    in   {"records": [{"mean radius": 13.5, "mean texture": 14.4, ...}, ...]}
    out  {"predictions": [{"label": "benign", "probability": 0.9731}, ...]}

A JSON object has no column order, callers leave fields out, misspell them and send "12.5" for 12.5.
``preprocess`` puts each value in the column the model was trained with, turns a missing field into
NaN (xgboost's "missing", which every tree knows how to route), and refuses an unknown name or a
non-number with one sentence that says which record and which field. The feature names and class
labels come from the saved model itself (data/model.json), so they cannot drift from it.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import xgboost

from kingpost import InputError

MAX_RECORDS = 10_000
USAGE = 'Send {"records": [{"<feature name>": <number>, ...}, ...]} with at least one record.'


class Model:
    def __init__(self, data_dir: Path, **kwargs: Any) -> None:
        self._model_path = Path(data_dir) / "model.json"

    def load(self) -> None:
        self._booster = xgboost.Booster(model_file=str(self._model_path))
        self._features: list[str] = list(self._booster.feature_names or [])
        self._column = {name: i for i, name in enumerate(self._features)}
        self._labels: list[str] = json.loads(self._booster.attr("labels") or "[]")

    def preprocess(self, model_input: Any) -> xgboost.DMatrix:
        records = model_input.get("records") if isinstance(model_input, dict) else None
        if not isinstance(records, list) or not records:
            raise InputError(USAGE)
        if len(records) > MAX_RECORDS:
            raise InputError(f"Send at most {MAX_RECORDS} records per request, not {len(records)}.")
        matrix = np.full((len(records), len(self._features)), np.nan, dtype=np.float32)
        for row, record in enumerate(records):
            if not isinstance(record, dict):
                raise InputError(f"Record {row} must be a JSON object of feature name -> number.")
            if not record:
                raise InputError(f"Record {row} is empty; send at least one feature.")
            unknown = [name for name in record if name not in self._column]
            if unknown:
                raise InputError(f"Record {row} has unknown features {self._describe(unknown)}.")
            for name, value in record.items():
                matrix[row, self._column[name]] = _number(value, row, name)
        return xgboost.DMatrix(matrix, feature_names=self._features, missing=np.nan)

    def predict(self, features: xgboost.DMatrix) -> np.ndarray:
        return self._booster.predict(features)

    def postprocess(self, scores: np.ndarray) -> dict[str, list[dict[str, Any]]]:
        # binary:logistic gives P(class 1) per row; multi:softprob gives one column per class.
        probabilities = np.column_stack([1 - scores, scores]) if scores.ndim == 1 else scores
        best = probabilities.argmax(axis=1)
        return {
            "predictions": [
                {"label": self._labels[k], "probability": round(float(p[k]), 4)}
                for k, p in zip(best, probabilities, strict=True)
            ]
        }

    def _describe(self, unknown: list[str]) -> str:
        """'mean_radius' (did you mean 'mean radius'?), 'foo' -- a hint beats a list of 30 names."""
        parts = []
        for name in unknown[:5]:
            close = difflib.get_close_matches(str(name), self._features, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"{str(name)[:40]!r}{hint}")
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        return ", ".join(parts) + more


def _number(value: Any, row: int, name: str) -> float:
    """A JSON number as float; null means missing (NaN). Strings and booleans are refused."""
    if value is None:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise InputError(f"Record {row}, feature {name!r}: expected a number or null, got {shown}.")
