"""Rows of a request -> the 2-D input of a tabular model (scikit-learn, XGBoost, LightGBM).

A request is ``{"inputs": rows}`` (or the rows alone): each row a list of values in training
column order, or, for a model trained on named columns, a ``{column: value}`` mapping.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from kingpost.frameworks._template import UNWRAP

ARRAY = '''\
def features(request):
    """A 2-D array from the rows of a request; an array (say, from your preprocess) passes as it is."""
    rows = unwrap(request)
    return np.asarray(rows, dtype=DTYPE) if isinstance(rows, list) else rows
'''

FRAME = '''\
def features(request):
    """A DataFrame of the FEATURES columns from rows of values (in that order) or of {column: value}.

    A DataFrame or array (say, from your preprocess) passes as it is.
    """
    rows = unwrap(request)
    if not isinstance(rows, list):
        return rows
    if rows and isinstance(rows[0], dict):
        return pd.DataFrame.from_records(rows, columns=FEATURES)
    return pd.DataFrame(rows, columns=FEATURES)
'''

ORDERED = '''\
def features(request):
    """A 2-D array from rows of values (in FEATURES' order) or of {column: value}.

    An array (say, from your preprocess) passes as it is.
    """
    rows = unwrap(request)
    if not isinstance(rows, list):
        return rows
    if rows and isinstance(rows[0], dict):
        rows = [[row[name] for name in FEATURES] for row in rows]
    return np.asarray(rows, dtype=DTYPE)
'''


@dataclass
class Rows:
    """The pieces of model.py that turn rows into a model's input."""

    imports: list[str]
    constants: dict[str, Any]
    helpers: list[str]
    modules: set[str] = field(default_factory=set)
    doc: str = ""


def rows(feature_names: Any, *, numeric: bool = False, frame: bool = True) -> Rows:
    """How model.py builds the input: an array, or with named columns a DataFrame (when pandas is here).

    ``numeric`` arrays are float32 (what XGBoost computes with); otherwise numpy infers the type.
    """
    names = [str(n) for n in feature_names] if feature_names is not None else None
    dtype = ", dtype=np.float32" if numeric else ""
    array, ordered = (h.replace(", dtype=DTYPE", dtype) for h in (ARRAY, ORDERED))
    if names is None:
        return Rows(["import numpy as np"], {}, [array, UNWRAP], {"numpy"},
                    "A request is {\"inputs\": rows} (or just the rows), each row a list of numbers.")
    doc = ("A request is {\"inputs\": rows} (or just the rows), each row a list of values in FEATURES' order or "
           "a mapping {column: value}.")
    if frame and importlib.util.find_spec("pandas") is not None:
        return Rows(["import numpy as np", "import pandas as pd"], {"FEATURES": names}, [FRAME, UNWRAP],
                    {"numpy", "pandas"}, doc)
    return Rows(["import numpy as np"], {"FEATURES": names}, [ordered, UNWRAP], {"numpy"}, doc)


def estimator_predict(proba: bool) -> tuple[str, str]:
    """The body of Model.predict for a scikit-learn-style estimator, and the shape of its answer."""
    if proba:
        return ('return {\n    "predictions": self._model.predict(model_input),\n'
                '    "probabilities": self._model.predict_proba(model_input),\n}',
                '{"predictions": [...], "probabilities": [[...], ...]}')
    return 'return {"predictions": self._model.predict(model_input)}', '{"predictions": [...]}'
