"""PyTorch ``nn.Module``s: ``torch.export`` when there is an example, else state dict + class source.

With ``example_input``, the model is exported (``torch.export``, ``model.pt2``) with a dynamic
batch dimension: the file holds the graph and the weights, so serving needs neither the class
nor its source. (TorchScript is deprecated since torch 2.9, so it is not used.) Without an
example, or when export fails, the weights go into ``model.pt`` (a state dict, loaded with
``weights_only=True``) and the source of the model's classes into ``packages/``; model.py then
builds the model with the constructor arguments read back from its attributes.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import warnings
from typing import Any

from kingpost.errors import BundleError, describe
from kingpost.frameworks._source import Copier, is_installed_module
from kingpost.frameworks._template import TO_JSONABLE, UNWRAP, Artifact, Target, import_order

TENSORS = '''\
def tensors(request):
    """The arguments of forward(): {"inputs": x} for one input, {"inputs": [x1, x2, ...]} for several.

    Each x is a (nested) list, made a tensor of the matching DTYPES entry. Tensors (say, from
    your preprocess) pass as they are.
    """
    values = unwrap(request)
    if isinstance(values, torch.Tensor):
        return (values,)
    if len(DTYPES) == 1 or isinstance(values, tuple):
        values = values if isinstance(values, tuple) else [values]
    return tuple(torch.as_tensor(v, dtype=dtype) for v, dtype in zip(values, DTYPES))
'''

PREDICT = '''\
with torch.inference_mode():
    return {"predictions": self._model(*model_input)}'''

DOC = ("A request is {\"inputs\": x} (or just x) with x a nested list of numbers, a batch, made a tensor of "
       "DTYPES[0]; a model with several inputs takes {\"inputs\": [x1, x2, ...]}. The answer is "
       "{\"predictions\": ...}: what the model returns, tensors as nested lists.")


def save(model: Any, target: Target) -> Artifact:
    import torch

    if not isinstance(model, torch.nn.Module):
        kind = type(model)
        raise BundleError(f"model: expected a torch.nn.Module, found a {kind.__module__}.{kind.__qualname__}.")
    example = target.model_example()
    training = model.training
    model.eval()
    try:
        if example is not None:
            args = _arguments(example, _dtype(model))
            exported = _export(model, args)
            if exported is not None:
                torch.export.save(exported, str(target.data / "model.pt2"))
                return _artifact(
                    model, [a.dtype for a in args], "torch.export",
                    "data/model.pt2 holds the model as torch.export saved it: graph and weights, no Python class "
                    "needed.",
                    'self._model = torch.export.load(str(self._data_dir / "model.pt2")).module()')
        return _state_dict(model, target)
    finally:
        model.train(training)


def _arguments(example: Any, dtype: Any) -> tuple[Any, ...]:
    import torch

    if isinstance(example, dict) and len(example) == 1 and ("inputs" in example or "instances" in example):
        example = next(iter(example.values()))
    values = example if isinstance(example, tuple) else (example,)
    return tuple(v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=dtype) for v in values)


def _export(model: Any, args: tuple[Any, ...]) -> Any:
    """An ExportedProgram with a dynamic batch dimension (else a fixed one), or None with a warning."""
    import torch

    # A batch of one would be specialised to 1: export with the example twice.
    batch_args = tuple(torch.cat([a, a]) if a.ndim and a.shape[0] == 1 else a for a in args)
    batch = torch.export.Dim("batch")
    with contextlib.suppress(Exception):  # any failure of the dynamic export falls back to a fixed shape
        return torch.export.export(model, batch_args, dynamic_shapes=tuple({0: batch} if a.ndim else None
                                                                             for a in batch_args))
    try:
        program = torch.export.export(model, args)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds; all mean "cannot export"
        warnings.warn(f"torch.export could not export {type(model).__name__} ({describe(exc)}); "
                      "kingpost.create saves its state dict and "
                      "class source instead.", UserWarning, stacklevel=5)
        return None
    warnings.warn(f"torch.export could not make the batch dimension of {type(model).__name__} dynamic; the bundle "
                  f"takes batches of exactly {args[0].shape[0] if args[0].ndim else 1}.", UserWarning, stacklevel=5)
    return program


def _state_dict(model: Any, target: Target) -> Artifact:
    import torch

    cls = type(model)
    kwargs = _constructor_arguments(model)
    try:
        rebuilt = cls(**kwargs)
        rebuilt.load_state_dict(model.state_dict())
    except Exception as exc:
        raise BundleError(
            f"model: {cls.__name__}(**{kwargs!r}) does not rebuild the model ({type(exc).__name__}); pass "
            "example_input so it can be saved with torch.export.") from exc
    torch.save(model.state_dict(), target.data / "model.pt")
    copier = Copier()
    imports: list[str] = []
    if is_installed_module(cls.__module__):
        imports.append(f"from {cls.__module__} import {cls.__name__}")
        modules = {cls.__module__.split(".")[0]}
        code = None
    else:
        copier.cls(cls, "model")
        code = copier.code
        module = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls.__name__).lower() + "_module"
        (target.packages / f"{module}.py").write_text(_module_text(code), encoding="utf-8")
        imports.append(f"from {module} import {cls.__name__}")
        modules = set(code.modules)
    artifact = _artifact(
        model, [_dtype(model)], "state dict",
        f"data/model.pt holds the weights (a state dict); {cls.__name__} is built from "
        + (f"packages/{module}.py, its source as it was when the bundle was created" if code else cls.__module__)
        + ", with MODEL_KWARGS.",
        f'self._model = {cls.__name__}(**MODEL_KWARGS)\n'
        'self._model.load_state_dict(torch.load(self._data_dir / "model.pt", weights_only=True))\n'
        "self._model.eval()")
    artifact.imports += imports
    artifact.constants["MODEL_KWARGS"] = kwargs
    artifact.modules |= modules
    artifact.code = code
    return artifact


def _constructor_arguments(model: Any) -> dict[str, Any]:
    """``__init__``'s arguments, read back from attributes of the same name (defaults left out)."""
    cls = type(model)
    kwargs: dict[str, Any] = {}
    for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = getattr(model, param.name, inspect.Parameter.empty)
        if isinstance(value, bool | int | float | str | tuple | list | type(None)):
            if value != param.default:
                kwargs[param.name] = value
        elif param.default is inspect.Parameter.empty:
            raise BundleError(
                f"model: {cls.__name__}.__init__ takes {param.name!r}, which kingpost cannot read back (keep it as "
                f"self.{param.name}), and without example_input the model cannot be saved with torch.export.")
    return kwargs


def _artifact(model: Any, dtypes: list[Any], fmt: str, saved: str, load: str) -> Artifact:
    return Artifact(
        framework="torch",
        format=fmt,
        summary=f"A PyTorch {type(model).__name__}",
        doc=f"{saved} {DOC}",
        imports=["import torch"],
        constants={"DTYPES": dtypes},
        load=load,
        preprocess="tensors({x})",
        predict=PREDICT,
        helpers=[TENSORS, UNWRAP, TO_JSONABLE],
        modules={"torch"},
    )


def _dtype(model: Any) -> Any:
    """The dtype inputs get: that of the model's first floating-point parameter (else float32)."""
    import torch

    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _module_text(code: Any) -> str:
    imports = "\n".join(sorted(code.imports.values(), key=import_order))
    header = ('"""The source of the model\'s classes, copied by kingpost.create; model.py builds the model '
              f'from it."""\n\nfrom __future__ import annotations\n\n{imports}')
    parts = [header]
    if code.constants:
        parts.append("\n".join(code.constants.values()))
    return "\n\n".join(parts) + "\n\n\n" + "\n\n\n".join(d.rstrip() for d in code.definitions.values()) + "\n"
