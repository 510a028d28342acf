"""Keras 3 models, saved as a ``.keras`` file (Keras' own zip of config and weights).

The backend the model was built with (``keras.backend.backend()``: torch, jax or tensorflow)
goes into config.yaml's environment_variables as KERAS_BACKEND, and its package into the
requirements; model.py sets the same default before it imports keras, so ``kingpost check``
imports it right too. Custom layers must be importable (and registered with
``keras.saving.register_keras_serializable``) where the bundle runs.
"""

from __future__ import annotations

from typing import Any

from kingpost.errors import BundleError
from kingpost.frameworks._template import TO_JSONABLE, UNWRAP, Artifact, Target

_BACKEND_MODULES = {"torch": {"torch"}, "jax": {"jax", "jaxlib"}, "tensorflow": {"tensorflow"}, "numpy": set()}

ARRAYS = '''\
def arrays(request):
    """The model's input: {"inputs": x} (or just x) for one input, {"inputs": {name: x, ...}} for named inputs.

    Each x is a (nested) list of numbers, made a float32 array; arrays (say, from your
    preprocess) pass as they are.
    """
    values = unwrap(request)
    if isinstance(values, dict):
        return {name: np.asarray(value, dtype=np.float32) for name, value in values.items()}
    return np.asarray(values, dtype=np.float32) if isinstance(values, list) else values
'''


def save(model: Any, target: Target) -> Artifact:
    import keras

    if not isinstance(model, keras.Model):
        kind = type(model)
        raise BundleError(f"model: expected a keras.Model, found a {kind.__module__}.{kind.__qualname__}.")
    model.save(target.data / "model.keras")
    backend = keras.backend.backend()
    return Artifact(
        framework="keras",
        format="Keras .keras",
        summary=f"A Keras {type(model).__name__}",
        doc="data/model.keras holds the model (Keras' own format), run with the "
            f"{backend} backend (KERAS_BACKEND in config.yaml). A request is {{\"inputs\": x}} (or just x) with x "
            "a batch as a nested list of numbers; a model with named inputs takes {\"inputs\": {name: x}}. The "
            "answer is {\"predictions\": ...}: model.predict of that batch.",
        imports=[f'import os\n\nimport numpy as np\n\nos.environ.setdefault("KERAS_BACKEND", "{backend}")\n'
                 "import keras  # after KERAS_BACKEND is set\n"],
        load='self._model = keras.saving.load_model(self._data_dir / "model.keras")',
        preprocess="arrays({x})",
        predict='return {"predictions": self._model.predict(model_input, verbose=0)}',
        helpers=[ARRAYS, UNWRAP, TO_JSONABLE],
        modules={"keras", "numpy", *_BACKEND_MODULES.get(backend, set())},
        environment={"KERAS_BACKEND": backend},
    )
