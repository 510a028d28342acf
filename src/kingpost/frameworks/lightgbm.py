"""LightGBM Boosters and scikit-learn wrappers, saved in LightGBM's own text format (``model.txt``).

The text format is LightGBM's native, version-stable model file (with the best iteration only,
when training stopped early). It holds the booster; a classifier's labels go into model.py as
CLASSES, and predict turns the booster's scores into ``predict``/``predict_proba``'s answers the
way LGBMClassifier does.
"""

from __future__ import annotations

import re
from typing import Any

from kingpost.errors import BundleError
from kingpost.frameworks._tabular import rows
from kingpost.frameworks._template import TO_JSONABLE, Artifact, Target

CLASSIFY = '''\
scores = self._model.predict(model_input)
# LGBMClassifier: one probability per row for two classes, one per class for more.
probabilities = scores if scores.ndim == 2 else np.column_stack([1 - scores, scores])
return {
    "predictions": np.asarray(CLASSES)[probabilities.argmax(axis=1)],
    "probabilities": probabilities,
}'''


def save(model: Any, target: Target) -> Artifact:
    import lightgbm as lgb

    kind = type(model)
    if isinstance(model, lgb.Booster):
        booster, names, classes, summary = model, _names(model.feature_name()), None, "A LightGBM Booster"
    elif isinstance(model, lgb.LGBMModel) and getattr(lgb, kind.__name__, None) is kind and not callable(
            model.objective_):
        booster, summary = model.booster_, f"A LightGBM {kind.__name__}"
        names = getattr(model, "feature_names_in_", None)
        classes = model.classes_.tolist() if isinstance(model, lgb.LGBMClassifier) else None
    elif isinstance(model, lgb.LGBMModel):  # a custom objective, or a subclass: pickle it like scikit-learn
        from kingpost.frameworks import sklearn

        return sklearn.save(model, target)
    else:
        raise BundleError(f"model: expected a LightGBM Booster or scikit-learn wrapper (LGBMClassifier, ...), "
                          f"found a {kind.__module__}.{kind.__qualname__}.")
    booster.save_model(str(target.data / "model.txt"))
    tab = rows(names)  # float64, as LightGBM compares with its double thresholds
    answer = ('{"predictions": [...], "probabilities": [[...], ...]}: the labels and class probabilities, as '
              f"{kind.__name__}.predict and predict_proba give them" if classes is not None else
              '{"predictions": [...]}: Booster.predict of those rows')
    return Artifact(
        framework="lightgbm",
        format="LightGBM text",
        summary=summary,
        doc=f"data/model.txt holds the booster (LightGBM's text format). {tab.doc} The answer is {answer}.",
        imports=[*tab.imports, "import lightgbm as lgb"],
        constants={**tab.constants, **({"CLASSES": classes} if classes is not None else {})},
        load='self._model = lgb.Booster(model_file=str(self._data_dir / "model.txt"))',
        preprocess="features({x})",
        predict=CLASSIFY if classes is not None else 'return {"predictions": self._model.predict(model_input)}',
        helpers=[*tab.helpers, TO_JSONABLE],
        modules={"lightgbm"} | tab.modules,
    )


def _names(names: list[str]) -> list[str] | None:
    """Feature names given at training; LightGBM's own ``Column_0, Column_1, ...`` are none."""
    return None if all(re.fullmatch(r"Column_\d+", n) for n in names) else names
