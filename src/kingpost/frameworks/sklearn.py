"""scikit-learn estimators and pipelines, saved with joblib (scikit-learn's own advice).

joblib pickles: loading needs the same scikit-learn version, which config.yaml pins. Classes
that the pickle refers to by module are required too (an XGBoost step in a Pipeline pins
xgboost). A class defined in ``__main__`` (a notebook), or a lambda, cannot be found again by
name, so such a model is written with cloudpickle instead, which copies that code by value.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from typing import Any

from kingpost.frameworks._requirements import pickled_modules
from kingpost.frameworks._source import Code, is_local_module
from kingpost.frameworks._tabular import estimator_predict, rows
from kingpost.frameworks._template import TO_JSONABLE, Artifact, Target


def save(model: Any, target: Target) -> Artifact:
    kind = type(model)
    summary = f"A scikit-learn {kind.__name__}" if kind.__module__.startswith("sklearn") else \
        f"A scikit-learn-compatible {kind.__name__}"
    try:
        modules = pickled_modules(model)
    except (pickle.PicklingError, AttributeError, TypeError):  # a lambda in a FunctionTransformer, say
        modules = {"__main__"}
    if "__main__" in modules:
        warnings.warn(f"{kind.__name__} uses code defined in __main__ (or a lambda), so kingpost.create saves it "
                      "with cloudpickle: it loads only with the same Python and library versions (config.yaml "
                      "pins them).", UserWarning, stacklevel=4)
        from kingpost.frameworks.pickle import dump

        modules = dump(model, target.data / "model.pkl")
        file, fmt, loader = "model.pkl", "cloudpickle", "cloudpickle"
    else:
        import joblib

        joblib.dump(model, target.data / "model.joblib")
        file, fmt, loader = "model.joblib", "joblib", "joblib"
        modules |= {"joblib"}
    local = {m: sys.modules[m] for m in modules if m in sys.modules and is_local_module(sys.modules[m])}
    tab = rows(getattr(model, "feature_names_in_", None))
    proba = hasattr(model, "predict_proba")
    load = (f'self._model = joblib.load(self._data_dir / "{file}")' if loader == "joblib" else
            f'with (self._data_dir / "{file}").open("rb") as f:\n    self._model = cloudpickle.load(f)')
    predict, answer = estimator_predict(proba)
    return Artifact(
        framework="sklearn",
        format=fmt,
        summary=summary,
        doc=f"data/{file} holds the model ({fmt}). {tab.doc}\nThe answer is {answer}: model.predict"
            + (" and model.predict_proba" if proba else "") + " of those rows.",
        imports=[f"import {loader}", *tab.imports],
        constants=tab.constants,
        load=load,
        preprocess="features({x})",
        predict=predict,
        helpers=[*tab.helpers, TO_JSONABLE],
        modules=modules | tab.modules | {"sklearn"},
        code=Code(local_modules=local),
    )
