"""Requirements of a created bundle: the distributions behind the modules it imports, pinned as installed now.

``{"sklearn", "numpy"}`` -> ``["numpy==2.1.3", "scikit-learn==1.5.2"]``. A local version segment
is dropped (``torch 2.5.1+cpu`` is pinned as ``torch==2.5.1``): indexes serve the public version,
and which build to install (CPU or CUDA) is the installing machine's choice.
"""

from __future__ import annotations

import functools
import io
import pickle
import sys
import types
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from kingpost.requirements import requirement_name


@functools.cache
def _packages() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def distributions_of(module: str) -> list[str]:
    """The installed distributions that provide the top-level module ``module`` (none for the stdlib)."""
    return list(dict.fromkeys(_packages().get(module.split(".")[0], [])))


def pinned(modules: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """``name==version`` for every distribution providing one of ``modules``, plus ``extra`` lines.

    An ``extra`` line replaces the pin of the same distribution. Modules that no distribution
    provides (the standard library, ``__main__``, local files) add nothing.
    """
    pins: dict[str, str] = {}
    for module in sorted(set(modules)):
        if module in sys.stdlib_module_names or module in ("__main__", "kingpost"):
            continue
        for dist in distributions_of(module):
            version = metadata.version(dist)
            name = metadata.metadata(dist)["Name"] or dist
            pins[requirement_name(name)] = f"{name}=={version.split('+')[0]}"
    for line in extra:
        pins[requirement_name(line)] = line
    return sorted(pins.values(), key=str.lower)


def pickled_modules(obj: Any, pickler: type[pickle.Pickler] = pickle.Pickler) -> set[str]:
    """The top-level modules a pickle of ``obj`` refers to: what unpickling it will import.

    Pickles ``obj`` once into nothing, noting the module of every class, function and object
    on the way (``pickler`` may be cloudpickle's, which pickles ``__main__`` code by value).
    """
    found: set[str] = set()

    class Recorder(pickler):  # type: ignore[valid-type,misc]
        def reducer_override(self, value: Any) -> Any:
            if isinstance(value, types.ModuleType):
                found.add(value.__name__)
            elif isinstance(value, type | types.FunctionType | types.BuiltinFunctionType):
                found.add(getattr(value, "__module__", None) or "builtins")
            else:
                found.add(type(value).__module__)
            parent = super()
            return parent.reducer_override(value) if hasattr(parent, "reducer_override") else NotImplemented

    Recorder(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return {m.split(".")[0] for m in found}


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)
