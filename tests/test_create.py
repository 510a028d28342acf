"""kingpost.create, whatever the framework: the target directory, hooks copied as source, requirements.

The model here is a plain function (the cloudpickle path: cheapest to build); each framework has
its own test_create_<framework>.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import kingpost
from creating import assert_close, predict_fresh

np = pytest.importorskip("numpy")
pytest.importorskip("cloudpickle", reason="cloudpickle is not installed (pip install 'kingpost[pickle]')")
pytestmark = pytest.mark.filterwarnings("ignore:kingpost.create saves .* with cloudpickle:UserWarning")

OFFSET = 3
LABELS = {"low": 0, "high": 1}


def total(values: list[float]) -> float:
    return float(sum(values))


def parse(request: dict[str, Any]) -> list[float]:
    """Uses a module under another name, a library function, a helper and two constants."""
    return [math.floor(v) + OFFSET + helper(v) for v in np.asarray(request["values"]).tolist()]


def helper(v: float) -> int:
    return LABELS["high"] if v > 10 else LABELS["low"]


async def label(output: float) -> dict[str, Any]:
    return {"total": output, "big": output > 100}


def test_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(kingpost.BundleError) as info:
        kingpost.create(total, tmp_path / "taken")
    assert str(info.value) == (f"{tmp_path / 'taken'}: expected an empty or new directory, found existing files; "
                               "kingpost.create writes nothing there.")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(kingpost.BundleError, match="found a file"):
        kingpost.create(total, tmp_path / "file")


def test_an_empty_directory_is_used(tmp_path: Path, load: Any) -> None:
    (tmp_path / "empty").mkdir()
    bundle = kingpost.create(total, tmp_path / "empty")
    assert isinstance(bundle, kingpost.Bundle) and bundle.name == "empty"
    assert load(tmp_path / "empty").predict([1, 2.5]) == 3.5
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["config.yaml", "data", "model", "packages"]


def test_an_unsupported_model_is_refused_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(kingpost.BundleError) as info:
        kingpost.create(42, tmp_path / "answer")
    message = str(info.value)
    assert message.startswith("model: expected scikit-learn estimators and pipelines, XGBoost and LightGBM models")
    assert message.endswith("or any other Python callable; found a builtins.int.")
    assert not (tmp_path / "answer").exists()


def test_hooks_are_written_with_what_they_use(tmp_path: Path, load: Any) -> None:
    kingpost.create(total, tmp_path / "hooked", preprocess=parse, postprocess=label)
    source = (tmp_path / "hooked" / "model" / "model.py").read_text()
    for line in ("import math", "import numpy as np", "OFFSET = 3", "LABELS = {'low': 0, 'high': 1}",
                 "def parse(request", "def helper(v", "async def label(output",
                 "    def preprocess(self, model_input):\n        return parse(model_input)",
                 "    async def postprocess(self, model_output):\n"
                 "        return to_jsonable(await label(model_output))"):
        assert line in source
    assert "from typing import Any" in source  # for the annotations, never evaluated
    bundle = load(tmp_path / "hooked")
    assert bundle.predict({"values": [1.5, 20.2]}) == {"total": 1 + 3 + 20 + 3 + 1, "big": False}


def test_lambdas_become_defs_and_closures_constants(tmp_path: Path, load: Any) -> None:
    scale = 2
    kingpost.create(total, tmp_path / "lambdas", preprocess=lambda r: [v * scale for v in r],
                    postprocess=lambda y: {"y": y})
    source = (tmp_path / "lambdas" / "model" / "model.py").read_text()
    assert "def preprocess_input(r):\n    return [v * scale for v in r]" in source
    assert "scale = 2" in source
    assert "def postprocess_output(y):\n    return {'y': y}" in source
    assert load(tmp_path / "lambdas").predict([1, 2]) == {"y": 6.0}
    kingpost.create(total, tmp_path / "one_line", preprocess=lambda r: r[:1], postprocess=lambda y: -y)
    source = (tmp_path / "one_line" / "model" / "model.py").read_text()
    assert "return r[:1]" in source and "return -y" in source
    assert load(tmp_path / "one_line").predict([1, 2]) == -1.0


def test_a_hook_using_an_object_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def noisy(x: Any) -> Any:
        return x + rng.normal()

    (tmp_path / "empty").mkdir()
    with pytest.raises(kingpost.BundleError) as info:
        kingpost.create(total, tmp_path / "empty", preprocess=noisy)
    assert str(info.value).startswith("preprocess: refers to 'rng' (a numpy.random._generator.Generator), which "
                                      "kingpost cannot write into model.py;")
    assert list((tmp_path / "empty").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no half-written bundle next to it


def test_a_hook_without_source_is_refused(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    exec("def typed_in(x):\n    return x\n", namespace)
    with pytest.raises(kingpost.BundleError, match=r"preprocess: cannot read the source of 'typed_in'"):
        kingpost.create(total, tmp_path / "b", preprocess=namespace["typed_in"])


def test_a_library_function_is_imported_not_copied(tmp_path: Path, load: Any) -> None:
    kingpost.create(total, tmp_path / "b", postprocess=math.sqrt)
    assert "from math import sqrt" in (tmp_path / "b" / "model" / "model.py").read_text()
    assert load(tmp_path / "b").predict([4, 5]) == 3.0


def test_requirements_are_pinned_and_extended(tmp_path: Path) -> None:
    from importlib.metadata import version

    kingpost.create(total, tmp_path / "b", preprocess=parse, requirements=["numpy>=1.20", "rich"])
    requirements = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["requirements"]
    assert requirements == sorted([f"cloudpickle=={version('cloudpickle')}", "numpy>=1.20", "rich"], key=str.lower)


def test_example_input_from_numpy(tmp_path: Path, load: Any) -> None:
    kingpost.create(total, tmp_path / "b", example_input=np.arange(3, dtype=np.float32))
    assert yaml.safe_load((tmp_path / "b" / "examples.yaml").read_text()) == [
        {"name": "example", "input": [0.0, 1.0, 2.0]}]
    assert load(tmp_path / "b").predict(example="example") == 3.0
    with pytest.raises(kingpost.BundleError, match="example_input: expected JSON-like data"):
        kingpost.create(total, tmp_path / "c", example_input=object())


def test_a_local_module_is_copied_into_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A helpers.py next to the notebook: the bundle carries a copy, and runs after the original is gone."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "kp_local_helpers.py").write_text("def triple(values):\n    return [3 * v for v in values]\n")
    monkeypatch.syspath_prepend(str(src))
    import kp_local_helpers  # type: ignore[import-not-found]

    def use_helpers(request: list[float]) -> list[float]:
        return kp_local_helpers.triple(request)  # type: ignore[no-any-return]

    try:
        kingpost.create(total, tmp_path / "b", preprocess=use_helpers)
    finally:
        del sys.modules["kp_local_helpers"]
    assert (tmp_path / "b" / "packages" / "kp_local_helpers.py").is_file()
    assert "import kp_local_helpers" in (tmp_path / "b" / "model" / "model.py").read_text()
    (src / "kp_local_helpers.py").unlink()
    assert predict_fresh([(tmp_path / "b", [1, 2])], tmp_path) == [9.0]


def test_check_shows_what_was_created(tmp_path: Path) -> None:
    kingpost.create(total, tmp_path / "b", example_input=[1, 2])
    result = subprocess.run([sys.executable, "-m", "kingpost", "check", str(tmp_path / "b")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for text in ("description   The Python callable total, saved by kingpost.create (cloudpickle in data/).",
                 "metadata      framework: pickle", f"metadata      created_by: kingpost {kingpost.__version__}",
                 "data          model.pkl", "requirement   cloudpickle==", "examples      example"):
        assert text in result.stdout, result.stdout


def test_generated_code_reads_as_written(tmp_path: Path, load: Any) -> None:
    """The skeleton every framework fills: docstring, imports, Model, helpers; no kingpost import."""
    kingpost.create(total, tmp_path / "b")
    source = (tmp_path / "b" / "model" / "model.py").read_text()
    assert source.startswith('"""The Python callable total, saved by kingpost.create.\n')
    assert "kingpost" not in source.replace("kingpost.create", "")
    assert textwrap.dedent('''\
        class Model:
            def __init__(self, data_dir, **kwargs):
                self._data_dir = data_dir  # the bundle's data/ directory
                self._model = None
        ''') in source
    assert_close(load(tmp_path / "b").predict([0.5, 0.25]), 0.75)
