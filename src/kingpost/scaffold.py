"""``kingpost init``: a new bundle that runs as written and teaches the hooks."""

from __future__ import annotations

import re
from pathlib import Path

from kingpost.errors import BundleError

CONFIG = """\
# kingpost reads Truss's config.yaml keys; see the README for all of them.
model_name: {name}
python_version: {python}
requirements: []          # e.g. ["scikit-learn==1.5.2"]; or requirements_file: requirements.txt
environment_variables: {{}}
secrets: {{}}              # name: default-or-null; read with self._secrets["name"]
resources:
  cpu: "1"
  memory: 2Gi
  use_gpu: false
runtime:
  predict_concurrency: 1  # how many predict calls may run at once (the "GPU lock")
"""

MODEL = '''\
"""The model of this bundle. kingpost (and Truss) call these hooks for every request:

    preprocess(input) -> predict(...) -> postprocess(...)

preprocess and postprocess of different requests run at the same time; predict runs under a
lock of runtime.predict_concurrency slots. So put slow I/O (downloads, decoding) in preprocess
and keep predict for the model itself. Any hook may be ``async def``; predict may ``yield`` to
stream its output.
"""


class Model:
    def __init__(self, **kwargs):
        # kwargs: config (dict of config.yaml), data_dir (Path of data/), secrets (mapping).
        self._data_dir = kwargs["data_dir"]
        self._model = None

    def load(self):
        # Runs once, before the first request: read weights from self._data_dir here.
        self._model = lambda x: x

    def preprocess(self, model_input):
        # Turn what callers send (JSON, a URL, an image) into what the model eats.
        return model_input

    def predict(self, model_input):
        # The model itself. Returns its input until you replace it.
        return self._model(model_input)

    def postprocess(self, model_output):
        # Turn raw model output into something a caller can use.
        return model_output
'''

EXAMPLES = """\
# Named inputs: `kingpost predict DIR --example hello`.
- name: hello
  input: {"x": 1}
"""


def init(directory: str | Path, *, python_version: str = "py311") -> Path:
    """Write a new bundle into ``directory`` (created if missing; it must be empty)."""
    path = Path(directory)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BundleError(f"{path}: expected an empty or new directory, found "
                          f"{'a file' if not path.is_dir() else 'existing files'}; kingpost init writes nothing there.")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().name).strip("-") or "model"
    (path / "model").mkdir(parents=True, exist_ok=True)
    (path / "data").mkdir()
    (path / "packages").mkdir()
    (path / "config.yaml").write_text(CONFIG.format(name=name, python=python_version), encoding="utf-8")
    (path / "model" / "__init__.py").write_text("", encoding="utf-8")
    (path / "model" / "model.py").write_text(MODEL, encoding="utf-8")
    (path / "examples.yaml").write_text(EXAMPLES, encoding="utf-8")
    return path
