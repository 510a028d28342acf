"""Importing model.py and building the Model: what a bundle may contain, and one sentence when it fails."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import bundle_path
from kingpost.config import load_config
from kingpost.errors import BundleError, KingpostError, MissingRequirementError, ModelLoadError
from kingpost.loader import import_model_class
from kingpost.types import HookKind, State

pytestmark = pytest.mark.timeout(120)  # a safety net: the scikit-learn import alone can take seconds

Load = Callable[..., Any]

LOAD_FAILURES = {
    "load_raises": (ModelLoadError, FileNotFoundError,
                    "load_raises/model/model.py: Model.load() raised FileNotFoundError: weights.bin is not in data/."),
    "init_raises": (ModelLoadError, KeyError,
                    "init_raises/model/model.py: Model() raised KeyError: 'api_url'."),
    "import_error": (MissingRequirementError, ModuleNotFoundError,
                     "import_error/model/model.py: missing requirement: cannot import 'kingpost_test_not_installed': "
                     "the bundle requires 'kingpost-test-not-installed==1.0' (config.yaml requirements), which is "
                     "not installed here; install it or run with --isolated."),
    "syntax_error": (ModelLoadError, SyntaxError,
                     "syntax_error/model/model.py, line 5: syntax error: expected ':'."),
    "no_model_class": (ModelLoadError, None,
                       "no_model_class/model/model.py: expected a class 'Model', found nothing by that name."),
    "no_predict": (ModelLoadError, None,
                   "no_predict/model/model.py: class Model has no predict method; predict is required."),
    "streaming_postprocess": (ModelLoadError, None,
                              "streaming_postprocess/model/model.py: Model.predict streams (it is a generator), so "
                              "it cannot have a postprocess; move that work into predict or drop postprocess."),
}


@pytest.mark.parametrize("name", LOAD_FAILURES)
def test_load_failure_is_one_sentence(load: Load, name: str) -> None:
    error_type, cause_type, message = LOAD_FAILURES[name]
    bundle = load(name)  # validating the bundle runs none of its code
    assert bundle.state is State.NEW
    with pytest.raises(ModelLoadError) as info:
        bundle.predict({"x": 1})
    assert type(info.value) is error_type
    assert str(info.value) == message
    if cause_type is None:
        assert info.value.__cause__ is None
    else:
        assert isinstance(info.value.__cause__, cause_type)
    assert bundle.state is State.FAILED
    with pytest.raises(ModelLoadError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        bundle.predict({"x": 1})  # the same answer each time; load is not retried


def test_missing_import_not_in_requirements(tmp_path: Path, load: Load) -> None:
    (tmp_path / "config.yaml").write_text("model_name: unlisted\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.py").write_text("import kingpost_test_unlisted_package\n")
    with pytest.raises(MissingRequirementError) as info:
        load(tmp_path).load_model()
    assert str(info.value) == (
        f"{tmp_path.name}/model/model.py: missing requirement: cannot import 'kingpost_test_unlisted_package': "
        "no installed package provides it; add it to config.yaml requirements.")


def test_import_time_exception(tmp_path: Path, load: Load) -> None:
    (tmp_path / "config.yaml").write_text("")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.py").write_text("THRESHOLD = 1 / 0\n")
    with pytest.raises(ModelLoadError) as info:
        load(tmp_path).load_model()
    assert str(info.value) == (
        f"{tmp_path.name}/model/model.py: importing it raised ZeroDivisionError: division by zero.")
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_missing_external_package_dir(copy_bundle: Callable[..., Path], load: Load) -> None:
    path = copy_bundle("external_package", external_package_dirs=["vendor"])
    with pytest.raises(ModelLoadError) as info:
        load(path).load_model()
    assert str(info.value) == (
        f"{path / 'config.yaml'}: external_package_dirs: expected an existing directory, found no directory "
        f"{path / 'vendor'}.")


@pytest.mark.parametrize("name, kinds", [
    ("echo", {"load": HookKind.SYNC, "preprocess": HookKind.SYNC, "predict": HookKind.SYNC,
              "postprocess": HookKind.SYNC}),
    ("async_hooks", {"load": HookKind.ASYNC, "preprocess": HookKind.ASYNC, "predict": HookKind.ASYNC,
                     "postprocess": HookKind.ASYNC, "is_healthy": HookKind.ASYNC}),
    ("sync_streaming", {"preprocess": HookKind.SYNC, "predict": HookKind.SYNC_GENERATOR}),
    ("async_streaming", {"preprocess": HookKind.ASYNC, "predict": HookKind.ASYNC_GENERATOR}),
    ("no_preprocess", {"load": HookKind.SYNC, "predict": HookKind.SYNC, "postprocess": HookKind.SYNC}),
])
def test_hook_kinds_are_found_without_constructing(name: str, kinds: dict[str, HookKind]) -> None:
    path = bundle_path(name)
    spec = import_model_class(path, load_config(path))
    assert dict(spec.kinds) == kinds
    assert spec.streams is (name in ("sync_streaming", "async_streaming"))


@pytest.mark.parametrize("name, given, expected", [
    ("no_preprocess", [1, 2], {"predict_saw": [1, 2], "postprocessed": True}),
    ("no_load", 21, 42),
    ("zero_arg_init", 5, 15),
    ("bundled_package", "hello", "HELLO!"),
    ("external_package", "stressed", "desserts"),
])
def test_optional_parts(load: Load, name: str, given: Any, expected: Any) -> None:
    assert load(name).predict(given) == expected


def test_init_receives_only_the_kwargs_it_declares(load: Load) -> None:
    assert load("declared_kwargs").predict(None) == {
        "flavour": "vanilla", "data_dir": str(bundle_path("declared_kwargs") / "data")}


def test_two_bundles_with_the_same_layout_do_not_clash(load: Load) -> None:
    before = sys.modules.get("model")
    a, b = load("twin_a"), load("twin_b")
    assert a.predict(None) == "twin a"  # model.py does `from model.helpers import NAME`
    assert b.predict(None) == "twin b"
    assert a.predict(None) == "twin a"
    assert sys.modules.get("model") is before  # once two bundles claim `model`, neither keeps it


LAZY = """
import kingpost
lazy = kingpost.load({lazy!r})
print(lazy.predict(2))
print(kingpost.load({twin!r}).predict(None))
try:
    lazy.predict(2)
except kingpost.ModelError as exc:
    print(exc)
"""


def test_imports_inside_hooks_reach_the_bundle_as_under_truss() -> None:
    # A fresh process: the first bundle to load keeps the name `model`, so imports inside its hooks
    # and pickles of its classes work; a second bundle claiming `model` makes such imports fail
    # loudly rather than reach the wrong bundle.
    code = LAZY.format(lazy=str(bundle_path("lazy_imports")), twin=str(bundle_path("twin_a")))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "106\ntwin a\npredict raised ModuleNotFoundError: No module named 'model'\n"


def test_the_same_bundle_opened_twice(load: Load) -> None:
    assert load("twin_a").predict(None) == load("twin_a").predict(None) == "twin a"


def test_environment_variables_are_set_before_the_model_runs(
        load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KP_TEST_GREETING", "KP_TEST_WORKERS"):
        monkeypatch.delenv(name, raising=False)  # and so restored after the test
    assert load("environment_variables").predict(["KP_TEST_GREETING", "KP_TEST_WORKERS"]) == {
        "KP_TEST_GREETING": "hi", "KP_TEST_WORKERS": "4"}


def test_sklearn_model_pickled_into_data_dir(copy_bundle: Callable[..., Path], load: Load) -> None:
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression().fit([[0.0], [1.0], [2.0], [8.0], [9.0], [10.0]], [0, 0, 0, 1, 1, 1])
    path = copy_bundle("sklearn_data_dir")
    (path / "data").mkdir()
    (path / "data" / "model.pkl").write_bytes(pickle.dumps(estimator))
    assert load(path).predict({"inputs": [[0.5], [9.5]]}) == [0, 1]


# -- secrets --------------------------------------------------------------------------------------

def test_secret_from_truss_env(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSS_SECRET_token", "from-truss-env")
    assert load("secrets").predict(["token", "region"]) == {"token": "from-truss-env", "region": "eu-west-1"}


def test_secret_from_kingpost_env_wins(load: Load, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRUSS_SECRET_token", "from-truss-env")
    monkeypatch.setenv("KINGPOST_SECRET_token", "from-kingpost-env")
    (tmp_path / "token").write_text("from-file\n")
    assert load("secrets", secrets_dir=tmp_path).predict(["token"]) == {"token": "from-kingpost-env"}


def test_secret_from_secrets_dir_argument(load: Load, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    (tmp_path / "region").write_text("us-east-2")
    assert load("secrets", secrets_dir=tmp_path).predict(["token", "region"]) == {
        "token": "from-file", "region": "us-east-2"}


def test_secret_from_secrets_dir_env(load: Load, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("from-env-dir")
    monkeypatch.setenv("KINGPOST_SECRETS_DIR", str(tmp_path))
    assert load("secrets").predict(["token"]) == {"token": "from-env-dir"}


def test_secret_default_and_undeclared(load: Load) -> None:
    bundle = load("secrets")
    assert bundle.predict(["token", "region"]) == {"token": None, "region": "eu-west-1"}
    with pytest.raises(KingpostError, match="predict raised KeyError"):
        bundle.predict(["password"])  # only declared names are readable


# -- a bundle exactly as Truss writes it ------------------------------------------------------------

def test_truss_written_bundle_with_secret_in_env(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSS_SECRET_token", "s3cr3t")
    assert load("truss_written").predict({"name": "Ada"}) == {
        "greeting": "Hello, Ada", "model_name": "truss-written", "token": "s3cr3t"}


def test_truss_written_bundle_with_secret_in_secrets_dir(load: Load, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("mounted\n")
    assert load("truss_written", secrets_dir=tmp_path).predict({"name": "Ada"}) == {
        "greeting": "Hello, Ada", "model_name": "truss-written", "token": "mounted"}


def test_bundle_errors_are_kingpost_errors() -> None:
    assert issubclass(BundleError, KingpostError)
    assert issubclass(MissingRequirementError, ModelLoadError)
