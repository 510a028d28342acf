"""The ``kingpost`` command, run as a real subprocess: output on stdout, one line on stderr per error."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import bundle_path

pytestmark = pytest.mark.timeout(120)


def kingpost(*args: str | Path, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kingpost", *map(str, args)], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str, code: int = 1) -> None:
    assert "Traceback" not in result.stderr
    assert result.stderr == f"error: {message}\n"
    assert result.returncode == code


def test_init_then_predict(tmp_path: Path) -> None:
    created = kingpost("init", "my-model", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout == "Created bundle my-model. Try: kingpost predict my-model --example hello\n"
    assert sorted(p.name for p in (tmp_path / "my-model").iterdir()) == [
        "config.yaml", "data", "examples.yaml", "model", "packages"]

    result = kingpost("predict", "my-model", "-d", '{"x": 1}', cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == {"x": 1}
    assert result.stdout.count("\n") == 1

    example = kingpost("predict", "my-model", "--example", "hello", cwd=tmp_path)
    assert (example.returncode, json.loads(example.stdout)) == (0, {"x": 1})


def test_predict_input_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text('{"inputs": [[1, 2], [3, 4]]}')
    result = kingpost("predict", bundle_path("echo"), "-f", "input.json", cwd=tmp_path)
    assert (result.returncode, json.loads(result.stdout)) == (0, {"inputs": [[1, 2], [3, 4]]})
    piped = kingpost("predict", bundle_path("echo"), "-f", "-", cwd=tmp_path, stdin="[1, 2, 3]")
    assert (piped.returncode, json.loads(piped.stdout)) == (0, [1, 2, 3])


def test_predict_prints_a_stream_as_it_comes(tmp_path: Path) -> None:
    result = kingpost("predict", bundle_path("sync_streaming"), "--example", "three", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("chunk 0\nchunk 1\nchunk 2\n")


def test_predict_with_a_secrets_dir(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("from-dir")
    result = kingpost("predict", bundle_path("truss_written"), "--secrets-dir", "secrets", "-d", '{"name": "Ada"}',
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["token"] == "from-dir"


@pytest.mark.parametrize("name, hooks", [
    ("echo", "load: sync, preprocess: sync, predict: sync, postprocess: sync"),
    ("async_hooks", "load: async, preprocess: async, predict: async, postprocess: async, is_healthy: async"),
    ("sync_streaming", "preprocess: sync, predict: sync generator"),
    ("async_streaming", "preprocess: async, predict: async generator"),
])
def test_check_lists_the_hooks(tmp_path: Path, name: str, hooks: str) -> None:
    result = kingpost("check", bundle_path(name), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert f"hooks         {hooks}\n" in result.stdout


def test_check_names_requirements_not_installed(tmp_path: Path, copy_bundle: Callable[..., Path]) -> None:
    path = copy_bundle("echo", requirements=["kingpost-test-not-installed==1.0", "pyyaml>=5"])
    result = kingpost("check", path, cwd=tmp_path)
    assert result.returncode == 0
    assert "requirement   kingpost-test-not-installed==1.0  (NOT INSTALLED)\n" in result.stdout
    assert "requirement   pyyaml>=5  (installed " in result.stdout
    assert result.stderr == ("warning: requirements not satisfied in this environment: "
                             "kingpost-test-not-installed==1.0 (install them, or use --isolated)\n")


def test_check_reports_a_model_that_cannot_be_imported(tmp_path: Path) -> None:
    result = kingpost("check", bundle_path("import_error"), cwd=tmp_path)
    assert "requirement   kingpost-test-not-installed==1.0  (NOT INSTALLED)\n" in result.stdout
    assert_one_line_error(result, (
        "import_error/model/model.py: missing requirement: cannot import 'kingpost_test_not_installed': the bundle "
        "requires 'kingpost-test-not-installed==1.0' (config.yaml requirements), which is not installed here; "
        "install it or run with --isolated."))


ERRORS = {
    "no such bundle": (("predict", "nope", "-d", "1"), "nope: expected a bundle directory, found nothing.", 1),
    "bad config": (("predict", "bad-config", "-d", "1"),
                   "bad-config/config.yaml: runtime.predict_concurrency: expected an integer >= 1, found -1.", 1),
    "no model file": (("predict", "bad-config-empty", "-d", "1"),
                      "bad-config-empty/config.yaml: model_module_dir/model_class_filename: expected the model file "
                      "model/model.py, found no such file.", 1),
    "no input": (("predict", "{echo}"), "give exactly one input: -d JSON, -f FILE or --example NAME.", 2),
    "two inputs": (("predict", "{echo}", "-d", "1", "--example", "hello"),
                   "give exactly one input: -d JSON, -f FILE or --example NAME.", 2),
    "missing input file": (("predict", "{echo}", "-f", "missing.json"), "missing.json: No such file or directory", 1),
    "missing example": (("predict", "{echo}", "--example", "goodbye"),
                        "{echo}/examples.yaml: no example named 'goodbye' (examples: hello, numbers).", 1),
    "load fails": (("predict", "{load_raises}", "-d", "1"),
                   "load_raises/model/model.py: Model.load() raised FileNotFoundError: weights.bin is not in data/.",
                   1),
    "syntax error": (("check", "{syntax_error}"), "syntax_error/model/model.py, line 5: syntax error: expected ':'.",
                     1),
    "predict raises": (("predict", "{hook_raises}", "-d", '{"raise": "predict"}'),
                       "predict raised RuntimeError: CUDA out of memory", 1),
    "init into a non-empty directory": (("init", "bad-config"), "bad-config: expected an empty or new directory, "
                                        "found existing files; kingpost init writes nothing there.", 1),
    "unknown command": (("deploy", "x"), "No such command 'deploy'. (see 'python -m kingpost --help')", 2),
    "unknown option": (("predict", "{echo}", "--bogus"),
                       "No such option '--bogus'. (see 'python -m kingpost predict --help')", 2),
}


def with_bundle_paths(text: str) -> str:
    """``{echo}`` -> the path of tests/bundles/echo."""
    for name in ("echo", "load_raises", "syntax_error", "hook_raises"):
        text = text.replace(f"{{{name}}}", str(bundle_path(name)))
    return text


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case of ERRORS, run once and side by side (each is a separate process)."""
    cwd = tmp_path_factory.mktemp("errors")
    (cwd / "bad-config").mkdir()
    (cwd / "bad-config" / "config.yaml").write_text("runtime:\n  predict_concurrency: -1\n")
    (cwd / "bad-config-empty").mkdir()
    (cwd / "bad-config-empty" / "config.yaml").write_text("model_name: empty\n")
    with ThreadPoolExecutor(4) as pool:
        runs = {case: pool.submit(kingpost, *map(with_bundle_paths, args), cwd=cwd)
                for case, (args, _, _) in ERRORS.items()}
        return {case: run.result() for case, run in runs.items()}


@pytest.mark.parametrize("case", ERRORS)
def test_every_error_is_one_line_and_a_non_zero_exit(
        error_runs: dict[str, subprocess.CompletedProcess[str]], case: str) -> None:
    args, message, code = ERRORS[case]
    result = error_runs[case]
    assert_one_line_error(result, with_bundle_paths(message), code)
    if args[0] != "check":  # check prints what it found before the error
        assert result.stdout == ""


def test_invalid_json_is_one_line(tmp_path: Path) -> None:
    result = kingpost("predict", bundle_path("echo"), "-d", "{x", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "JSON" in result.stderr
    assert result.stderr.count("\n") == 1


def test_help_and_version(tmp_path: Path) -> None:
    result = kingpost("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("init", "predict", "serve", "check", "context", "image", "ray", "k8s"):
        assert f"  {command} " in result.stdout
    assert kingpost(cwd=tmp_path).stdout == result.stdout  # bare `kingpost` shows the same help
    version = kingpost("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, "python -m kingpost, version 0.1.0\n")
