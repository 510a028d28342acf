"""The model.py that ``kingpost.create`` writes: one skeleton, filled in by a framework module.

A framework module gets a :class:`Target` (where to write) and returns an :class:`Artifact` (what it
wrote and the code that serves it); both live here, so plug-ins never import the package that
loads them by name.

The generated file imports nothing from kingpost, so the bundle also runs under Truss. It reads
top to bottom as: docstring (what is in data/, what a request and an answer look like), imports,
constants, the user's hooks and helpers (copied source), class Model, and small helper functions.
"""

from __future__ import annotations

import inspect
import pprint
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kingpost.frameworks._source import Code


@dataclass
class Target:
    """Where a framework module writes, and the example it may trace the model with."""

    data: Path  # the bundle's data/ directory
    packages: Path  # the bundle's packages/ directory (on sys.path when the bundle runs)
    example_input: Any = None
    preprocess: Callable[..., Any] | None = None

    def model_example(self) -> Any:
        """The example as the model receives it: ``example_input`` after the user's preprocess."""
        if self.example_input is None or self.preprocess is None:
            return self.example_input
        if inspect.iscoroutinefunction(self.preprocess):
            import asyncio

            return asyncio.run(self.preprocess(self.example_input))
        return self.preprocess(self.example_input)


@dataclass
class Artifact:
    """What a framework module saved into data/ and the code model.py needs to serve it."""

    framework: str  # model_metadata.framework: the name of the optional extra (sklearn, torch, ...)
    format: str  # how data/ holds it, for people: "joblib", "XGBoost UBJ", ...
    summary: str  # "A scikit-learn Pipeline": the first line of the docstring and the description
    doc: str  # what a request and an answer look like
    imports: list[str]
    load: str  # body of Model.load
    predict: str  # body of Model.predict(self, model_input)
    preprocess: str = "{x}"  # expression turning the request {x} into the model's input
    constants: dict[str, Any] = field(default_factory=dict)
    helpers: list[str] = field(default_factory=list)  # sources of module-level functions after the class
    modules: set[str] = field(default_factory=set)  # top-level modules whose distributions the bundle needs
    environment: dict[str, str] = field(default_factory=dict)
    code: Code | None = None  # classes copied from the user's code (torch state-dict path)


@dataclass
class Hooks:
    """The user's preprocess/postprocess as written into model.py: names to call and their code."""

    code: Code = field(default_factory=Code)
    preprocess: str | None = None  # the name to call
    postprocess: str | None = None
    preprocess_async: bool = False
    postprocess_async: bool = False


UNWRAP = '''\
def unwrap(request):
    """The payload of {"inputs": ...} or {"instances": ...}; any other request as it is."""
    if isinstance(request, dict) and len(request) == 1 and ("inputs" in request or "instances" in request):
        return next(iter(request.values()))
    return request
'''

TO_JSONABLE = '''\
def to_jsonable(value):
    """Arrays and tensors become lists (and tuples lists), so the answer can be written as JSON."""
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    return value
'''

# Names the skeleton itself defines at module level; user code may not take them.
RESERVED = {"Model": "", "to_jsonable": "", "unwrap": ""}


def render(artifact: Artifact, hooks: Hooks) -> str:
    """The text of model.py."""
    user = hooks.code
    own: list[str] = []
    for line in (line for entry in artifact.imports for line in entry.strip("\n").splitlines()):
        if not line or line not in own:
            own.append(line)
    theirs = [line for line in sorted(user.imports.values(), key=import_order) if line not in own]
    imports = ["from __future__ import annotations", "", *own, *theirs]
    doc = "\n\n".join(textwrap.fill(p, 100) for p in artifact.doc.strip().split("\n\n"))
    header = [f'"""{artifact.summary}, saved by kingpost.create.\n\n{doc}\n\n'
              'This file is yours: edit it as you like. config.yaml pins the packages it needs.\n"""',
              "\n".join(imports)]
    constants = [f"{name} = {_literal(value)}" for name, value in artifact.constants.items()]
    constants += list(user.constants.values())
    if constants:
        header.append("\n".join(constants))
    blocks = ["\n\n".join(header)]
    blocks += [source.rstrip() for source in user.definitions.values()]
    blocks.append(_model_class(artifact, hooks))
    blocks += [source.rstrip() for source in artifact.helpers]
    return "\n\n\n".join(blocks) + "\n"


def _model_class(artifact: Artifact, hooks: Hooks) -> str:
    x = "model_input"
    if hooks.preprocess is not None:
        x = f"{'await ' if hooks.preprocess_async else ''}{hooks.preprocess}(model_input)"
    y = "model_output"
    if hooks.postprocess is not None:
        y = f"{'await ' if hooks.postprocess_async else ''}{hooks.postprocess}(model_output)"
    pre_def = "async def" if hooks.preprocess_async else "def"
    post_def = "async def" if hooks.postprocess_async else "def"
    return f'''\
class Model:
    def __init__(self, data_dir, **kwargs):
        self._data_dir = data_dir  # the bundle's data/ directory
        self._model = None

    def load(self):
{_indent(artifact.load)}

    {pre_def} preprocess(self, model_input):
        return {artifact.preprocess.format(x=x)}

    def predict(self, model_input):
{_indent(artifact.predict)}

    {post_def} postprocess(self, model_output):
        return to_jsonable({y})'''


def _indent(body: str) -> str:
    return textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8)


def _literal(value: Any) -> str:
    return pprint.pformat(value, width=100, sort_dicts=False)


def import_order(line: str) -> tuple[bool, str]:
    return line.startswith("from "), line


def write_model(path: Path, source: str) -> None:
    compile(source, str(path), "exec")  # a bug here is kingpost's, and should fail before anything is written
    path.write_text(source, encoding="utf-8")
