"""Any other Python callable, saved with cloudpickle.

cloudpickle copies functions and classes of ``__main__`` by value; kingpost also has it copy those
of local modules (a ``helpers.py`` next to the notebook, anything no installed distribution
provides), so the bundle does not need them. A pickle loads only with the same Python and, for
what it refers to, the same library versions: config.yaml pins them, and ``create`` warns.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

from kingpost.frameworks._requirements import pickled_modules
from kingpost.frameworks._source import is_local_module
from kingpost.frameworks._template import TO_JSONABLE, Artifact, Target

LOAD = '''\
with (self._data_dir / "model.pkl").open("rb") as f:
    self._model = cloudpickle.load(f)'''


def save(model: Any, target: Target) -> Artifact:
    name = getattr(model, "__qualname__", None) or type(model).__qualname__
    warnings.warn(f"kingpost.create saves {name} with cloudpickle: the bundle loads only with the same Python "
                  "version and the same versions of the libraries it uses (config.yaml pins them).",
                  UserWarning, stacklevel=4)
    modules = dump(model, target.data / "model.pkl")
    return Artifact(
        framework="pickle",
        format="cloudpickle",
        summary=f"The Python callable {name}",
        doc="data/model.pkl holds it (cloudpickle: same Python and library versions needed to load it). predict "
            "calls it with the request (after preprocess); the answer is what it returns, arrays as lists.",
        imports=["import cloudpickle"],
        load=LOAD,
        predict="return self._model(model_input)",
        helpers=[TO_JSONABLE],
        modules=modules,
    )


def dump(obj: Any, path: Path) -> set[str]:
    """cloudpickle ``obj`` into ``path``, local modules by value; the modules loading it will import."""
    import cloudpickle

    local = [sys.modules[m] for m in pickled_modules(obj, cloudpickle.CloudPickler)
             if m in sys.modules and is_local_module(sys.modules[m])]
    for module in local:
        cloudpickle.register_pickle_by_value(module)
    try:
        with path.open("wb") as f:
            cloudpickle.dump(obj, f)
        return (pickled_modules(obj, cloudpickle.CloudPickler) - {m.__name__ for m in local}) | {"cloudpickle"}
    finally:
        for module in local:
            cloudpickle.unregister_pickle_by_value(module)
