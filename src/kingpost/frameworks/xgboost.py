"""XGBoost Boosters and scikit-learn wrappers, saved in XGBoost's own UBJ format (``model.ubj``).

UBJ is XGBoost's default format since 2.1: binary JSON, exact, loadable by later XGBoost
versions. A wrapper (XGBClassifier, XGBRegressor, ...) is loaded back as the same class, which
keeps its objective and number of classes, so ``predict`` and ``predict_proba`` answer as they did
in memory. A Booster gets its ``xgboost.DMatrix`` built in preprocess, from plain rows.
"""

from __future__ import annotations

from typing import Any

from kingpost.errors import BundleError
from kingpost.frameworks._tabular import estimator_predict, rows
from kingpost.frameworks._template import TO_JSONABLE, UNWRAP, Artifact, Target

DMATRIX = '''\
def dmatrix(request):
    """An xgboost.DMatrix from the rows of a request; a DMatrix (say, from your preprocess) passes as it is."""
    rows = unwrap(request)
    if isinstance(rows, xgb.DMatrix):
        return rows
    if isinstance(rows, list):
        rows = np.asarray(rows, dtype=np.float32)
    return xgb.DMatrix(rows, feature_names=FEATURES)
'''

DMATRIX_RECORDS = DMATRIX.replace('''    if isinstance(rows, list):
''', '''    if isinstance(rows, list):
        if rows and isinstance(rows[0], dict):
            rows = [[row[name] for name in FEATURES] for row in rows]
''')


def save(model: Any, target: Target) -> Artifact:
    import xgboost as xgb

    if isinstance(model, xgb.Booster):
        return _booster(model, target)
    kind = type(model)
    if isinstance(model, xgb.XGBModel) and getattr(xgb, kind.__name__, None) is kind:
        return _wrapper(model, target)
    if isinstance(model, xgb.XGBModel):  # a subclass of the user's, or a dask wrapper: pickle it like scikit-learn
        from kingpost.frameworks import sklearn

        return sklearn.save(model, target)
    raise BundleError(f"model: expected an XGBoost Booster or scikit-learn wrapper (XGBClassifier, ...), found a "
                      f"{kind.__module__}.{kind.__qualname__}.")


def _booster(booster: Any, target: Target) -> Artifact:
    booster.save_model(str(target.data / "model.ubj"))
    names = booster.feature_names
    return Artifact(
        framework="xgboost",
        format="XGBoost UBJ",
        summary="An XGBoost Booster",
        doc="data/model.ubj holds the model (XGBoost's UBJ format). A request is {\"inputs\": rows} (or just the "
            "rows), each row a list of numbers" + (" in FEATURES' order or a mapping {feature: value}" if names else "")
            + "; preprocess turns the rows into an xgboost.DMatrix. The answer is {\"predictions\": [...]}: "
            "Booster.predict of that DMatrix.",
        imports=["import numpy as np", "import xgboost as xgb"],
        constants={"FEATURES": names},
        load='self._model = xgb.Booster(model_file=str(self._data_dir / "model.ubj"))',
        preprocess="dmatrix({x})",
        predict='return {"predictions": self._model.predict(model_input)}',
        helpers=[DMATRIX_RECORDS if names else DMATRIX, UNWRAP, TO_JSONABLE],
        modules={"xgboost", "numpy"},
    )


def _wrapper(model: Any, target: Target) -> Artifact:
    model.save_model(str(target.data / "model.ubj"))
    name = type(model).__name__
    tab = rows(getattr(model, "feature_names_in_", None), numeric=True)
    proba = hasattr(model, "predict_proba")
    predict, answer = estimator_predict(proba)
    return Artifact(
        framework="xgboost",
        format="XGBoost UBJ",
        summary=f"An XGBoost {name}",
        doc=f"data/model.ubj holds the model (XGBoost's UBJ format), loaded back as an xgboost.{name}. {tab.doc} "
            f"The answer is {answer}: {name}.predict" + (" and predict_proba" if proba else "") + " of those rows.",
        imports=[*tab.imports, "import xgboost as xgb"],
        constants=tab.constants,
        load=f'self._model = xgb.{name}()\nself._model.load_model(str(self._data_dir / "model.ubj"))',
        preprocess="features({x})",
        predict=predict,
        helpers=[*tab.helpers, TO_JSONABLE],
        modules={"xgboost", "sklearn"} | tab.modules,  # the wrappers need scikit-learn
    )
