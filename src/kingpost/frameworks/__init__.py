"""``kingpost.create``: from a model in memory to a bundle on disk.

One module per framework saves the model into data/ in that framework's own format and says
what model.py must do with it (an :class:`~kingpost.frameworks._template.Artifact`); this
module picks the framework, copies the user's hooks, and writes model.py, config.yaml and
examples.yaml. Frameworks are recognised by the modules of the model's classes, so nothing
is imported that the model does not already come from.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kingpost.errors import BundleError, KingpostError, describe
from kingpost.frameworks._requirements import pinned
from kingpost.frameworks._source import Copier
from kingpost.frameworks._template import RESERVED, Artifact, Hooks, Target, render, write_model

if TYPE_CHECKING:
    from kingpost.bundle import Bundle

__all__ = ["create"]

# The top-level module of a class in the model's MRO -> the kingpost module that saves it. The
# first class that matches decides: XGBClassifier is xgboost before it is sklearn.
_FRAMEWORKS = {
    "sklearn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm", "torch": "torch", "keras": "keras",
    "transformers": "transformers", "onnx": "onnx",
}
SUPPORTED = ("scikit-learn estimators and pipelines, XGBoost and LightGBM models, PyTorch nn.Modules, Keras 3 "
             "models, Hugging Face transformers pipelines, ONNX models (or a path to a .onnx file), or any "
             "other Python callable")


def create(
    model: Any,
    target_dir: str | os.PathLike[str],
    *,
    preprocess: Callable[[Any], Any] | None = None,
    postprocess: Callable[[Any], Any] | None = None,
    requirements: Sequence[str] | None = None,
    example_input: Any = None,
    name: str | None = None,
) -> Bundle:
    """Save ``model`` as a new bundle in ``target_dir`` (new or empty) and open it.

    The model is written into ``data/`` in its framework's own format (joblib for scikit-learn,
    UBJ for XGBoost, text for LightGBM, ``torch.export`` for PyTorch, ``.keras`` for Keras,
    ``save_pretrained`` for a transformers pipeline, the ``.onnx`` file for ONNX, cloudpickle for
    any other callable), next to a ``model/model.py`` that loads it and predicts with it: plain
    code, meant to be read and edited. ``config.yaml`` pins the packages it needs to the versions
    installed now, and the Python version to this interpreter's.

    Args:
        model: the fitted model, or a path to a ``.onnx`` file.
        target_dir: where to write the bundle; it must not exist or be empty.
        preprocess: a function from the request (JSON) to what you would pass to the model in
            memory. Its source is copied into model.py, with import lines for the modules it
            uses, the source of helper functions defined next to it, and constants written as
            literals. It cannot refer to other objects (a fitted scaler, an open file): build
            those inside the function, or save them in ``data/`` and edit ``load()``.
        postprocess: a function from the model's output (see the docstring of the generated
            model.py: ``{"predictions": ...}`` for most frameworks) to the answer. Arrays in its
            result become lists. Same rules as ``preprocess``.
        requirements: extra requirement lines; one naming a distribution that was detected
            replaces its pin.
        example_input: a request, written to ``examples.yaml`` (numpy arrays become lists) so that
            ``kingpost predict DIR --example example`` works. PyTorch models are traced with it.
        name: ``model_name`` in config.yaml (default: the directory's name).

    Returns:
        The new bundle, as :func:`kingpost.load` would open it.

    Raises:
        BundleError: the directory is not empty, the model is of no supported kind, or a hook
            cannot be copied; one sentence says which.
    """
    target = Path(target_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BundleError(f"{target}: expected an empty or new directory, found "
                          f"{'a file' if not target.is_dir() else 'existing files'}; kingpost.create writes nothing "
                          "there.")
    framework = importlib.import_module(f"kingpost.frameworks.{_detect(model)}")
    example = None if example_input is None else jsonable(example_input, "example_input")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for sub in ("model", "data", "packages"):
            (work / sub).mkdir()
        artifact = _save(framework, model, Target(work / "data", work / "packages", example_input, preprocess))
        hooks = _copy_hooks(artifact, preprocess, postprocess)
        local = {**(artifact.code.local_modules if artifact.code else {}), **hooks.code.local_modules}
        _copy_local_modules(local, work / "packages")
        (work / "model" / "__init__.py").write_text("", encoding="utf-8")
        write_model(work / "model" / "model.py", render(artifact, hooks))
        modules = (artifact.modules | hooks.code.modules) - set(local)
        config = _config(artifact, name or _default_name(target), pinned(modules, requirements or ()))
        (work / "config.yaml").write_text(config, encoding="utf-8")
        if example is not None:
            (work / "examples.yaml").write_text(
                "# Named inputs: `kingpost predict DIR --example example`.\n"
                + yaml.safe_dump([{"name": "example", "input": example}], sort_keys=False), encoding="utf-8")
        if target.exists():
            target.rmdir()
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from kingpost.bundle import Bundle

    return Bundle(target)


def _detect(model: Any) -> str:
    if isinstance(model, str | os.PathLike):
        if Path(model).suffix == ".onnx":
            return "onnx"
        raise BundleError(f"model: expected a model object or a path to a .onnx file, found the path {str(model)!r}.")
    for cls in type(model).__mro__:
        framework = _FRAMEWORKS.get(cls.__module__.split(".")[0])
        if framework is not None:
            return framework
    if callable(model):
        return "pickle"
    kind = type(model)
    raise BundleError(f"model: expected {SUPPORTED}; found a {kind.__module__}.{kind.__qualname__}.")


def _save(framework: Any, model: Any, target: Target) -> Artifact:
    try:
        artifact: Artifact = framework.save(model, target)
    except KingpostError:
        raise
    except ImportError as exc:
        extra = framework.__name__.rsplit(".", 1)[1]
        raise BundleError(f"saving the model needs {exc.name or 'a package'}, which is not installed; "
                          f"pip install 'kingpost[{extra}]'.") from exc
    except Exception as exc:
        raise BundleError(f"could not save the model: {describe(exc, end=True)}") from exc
    return artifact


def _copy_hooks(artifact: Artifact, preprocess: Any, postprocess: Any) -> Hooks:
    reserved = dict(RESERVED)
    lines = [line.split("#")[0].strip() for entry in artifact.imports for line in entry.splitlines()]
    reserved.update({name: line for line in lines for name in _bound_names(line)})
    reserved.update({name: "" for name in artifact.constants})
    reserved.update({m.group(1): "" for h in artifact.helpers for m in re.finditer(r"^def (\w+)", h, re.M)})
    copier = Copier(reserved)
    hooks = Hooks(code=copier.code)
    if preprocess is not None:
        hooks.preprocess = copier.function(preprocess, "preprocess", preferred="preprocess_input")
        hooks.preprocess_async = inspect.iscoroutinefunction(preprocess)
    if postprocess is not None:
        hooks.postprocess = copier.function(postprocess, "postprocess", preferred="postprocess_output")
        hooks.postprocess_async = inspect.iscoroutinefunction(postprocess)
    return hooks


def _bound_names(line: str) -> list[str]:
    """The names an import line binds: ``import numpy as np`` -> np; ``from a import b, c`` -> b, c."""
    if line.startswith("from "):
        names = line.split(" import ", 1)[1]
    elif line.startswith("import "):
        names = line[len("import "):]
    else:
        return []
    bound = []
    for part in names.split(","):
        words = part.split()
        bound.append(words[-1] if "as" in words else words[0].split(".")[0])
    return bound


def _copy_local_modules(modules: dict[str, Any], packages: Path) -> None:
    """Copy modules that no installed distribution provides (a ``helpers.py`` next to the notebook)."""
    for name, module in modules.items():
        file = Path(module.__file__)
        if hasattr(module, "__path__"):
            shutil.copytree(file.parent, packages / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(file, packages / f"{name}.py")


def _config(artifact: Artifact, name: str, requirements: list[str]) -> str:
    from kingpost._version import __version__
    from kingpost.config import current_python_version

    data = {
        "model_name": name,
        "description": f"{artifact.summary}, saved by kingpost.create ({artifact.format} in data/).",
        "model_metadata": {"framework": artifact.framework, "format": artifact.format,
                           "created_by": f"kingpost {__version__}"},
        "python_version": current_python_version(),
        "requirements": requirements,
        "environment_variables": artifact.environment,
    }
    return "# Written by kingpost.create; kingpost reads Truss's config.yaml keys.\n" + yaml.safe_dump(
        data, sort_keys=False, width=120)


def _default_name(target: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", target.resolve().name).strip("-") or "model"


def jsonable(value: Any, what: str) -> Any:
    """``value`` as JSON-like data: numpy arrays and tensors as lists, a DataFrame as records."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, what) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, what) for v in value]
    if isinstance(value, str | bool | int | float | type(None)):
        return value
    if type(value).__module__.split(".")[0] == "pandas" and hasattr(value, "columns"):
        return jsonable(value.to_dict(orient="records"), what)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors, pandas Series
        return jsonable(value.tolist(), what)
    kind = type(value)
    raise BundleError(f"{what}: expected JSON-like data (numbers, strings, lists, dicts, numpy arrays), found a "
                      f"{kind.__module__}.{kind.__qualname__}.")

