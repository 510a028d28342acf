"""ONNX models (an ``onnx.ModelProto`` or a path to a ``.onnx`` file), served with onnxruntime on CPU.

The model is written as one ``model.onnx`` (external data is read in and written inline, or next
to it as ``model.onnx.data`` past protobuf's 2 GB limit). Serving needs onnxruntime and numpy,
not onnx. Inputs are named as in the graph; so are the outputs of the answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kingpost.errors import BundleError
from kingpost.frameworks._template import TO_JSONABLE, UNWRAP, Artifact, Target

FEEDS = '''\
class BadInput(ValueError):
    """A request the model cannot take: kingpost answers it with a 400 (its status_code)."""

    status_code = 400


def feeds(request):
    """{input name: array} from {"inputs": {name: x, ...}} or {name: x, ...}; with one input, also {"inputs": x} or x.

    Each x is a (nested) list, made an array of the input's type in INPUTS.
    """
    values = unwrap(request)
    if not (isinstance(values, dict) and values and set(values) <= set(INPUTS)):
        if len(INPUTS) != 1:
            raise BadInput(f"expected a mapping of the inputs {', '.join(INPUTS)} to values")
        values = {next(iter(INPUTS)): values}
    return {name: np.asarray(value, dtype=INPUTS[name]) for name, value in values.items()}
'''

LOAD = '''\
self._model = ort.InferenceSession(str(self._data_dir / "model.onnx"), providers=["CPUExecutionProvider"])
self._outputs = [output.name for output in self._model.get_outputs()]'''

_TWO_GB = 2**31


def save(model: Any, target: Target) -> Artifact:
    import onnx

    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.is_file():
            found = "a directory" if path.exists() else "nothing"
            raise BundleError(f"model: expected an ONNX file at {path}, found {found}.")
        model = onnx.load(str(path))
    if not isinstance(model, onnx.ModelProto):
        kind = type(model)
        raise BundleError(f"model: expected an onnx.ModelProto, found a {kind.__module__}.{kind.__qualname__}.")
    onnx.checker.check_model(model)
    onnx.save(model, str(target.data / "model.onnx"), save_as_external_data=model.ByteSize() >= _TWO_GB,
              location="model.onnx.data")
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = {i.name: _dtype(i) for i in graph.input if i.name not in initializers}
    outputs = ", ".join(o.name for o in graph.output)
    return Artifact(
        framework="onnx",
        format="ONNX",
        summary=f"An ONNX model ({graph.name or 'unnamed graph'}, {len(graph.node)} nodes)",
        doc="data/model.onnx holds the model, run by onnxruntime on CPU (edit providers in load() for a GPU). "
            f"A request is {{\"inputs\": {{name: x, ...}}}} with the graph's inputs ({', '.join(inputs)}) and x "
            f"nested lists; a model with one input also takes {{\"inputs\": x}} or just x. The answer maps the "
            f"graph's outputs ({outputs}) to their values.",
        imports=["import numpy as np", "import onnxruntime as ort"],
        constants={"INPUTS": inputs},
        load=LOAD,
        preprocess="feeds({x})",
        predict="return dict(zip(self._outputs, self._model.run(self._outputs, model_input)))",
        helpers=[FEEDS, UNWRAP, TO_JSONABLE],
        modules={"onnxruntime", "numpy"},
    )


def _dtype(value_info: Any) -> str | None:
    """The numpy name of a tensor input's element type (``float32``); None for other kinds of input."""
    import onnx

    if not value_info.type.HasField("tensor_type"):
        return None
    return str(onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type).name)
