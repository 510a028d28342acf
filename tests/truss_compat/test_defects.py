"""Defects found running real Truss bundles (issue 13, items 7 and 8), one test each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from compat_suite import compat, kingpost_only, served  # noqa: F401 - fixtures are found by name

pytestmark = kingpost_only
TESTS = Path(__file__).parent.parent


def kingpost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kingpost", *args], capture_output=True, text=True, timeout=120)


def errors(out: subprocess.CompletedProcess[str]) -> list[str]:
    """The error lines (a progress line such as context's "kingpost: writing ..." may precede them)."""
    return [line for line in out.stderr.splitlines() if line.startswith("error: ")]


def test_blank_requirement_is_ignored_by_check():
    out = kingpost("check", str(compat("blank_requirement")))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "requirement   pyyaml" in out.stdout and "requirement     (" not in out.stdout


def test_async_model_leaves_no_pending_task_at_exit():
    code = f"import kingpost; print(kingpost.load({str(compat('async_exit'))!r}).predict([1]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[1]"
    assert "Task was destroyed" not in out.stderr, out.stderr


def test_requirement_provided_by_another_distribution_is_met():
    from kingpost.check import _requirement

    # pyyaml installs the module `yaml`; a requirement naming the module finds it through metadata.
    found = _requirement("yaml")
    assert found.satisfied and found.installed is not None and "PyYAML" in found.installed


def test_context_refuses_what_check_refuses(tmp_path):
    bundle = compat("trt_llm")
    checked = kingpost("check", str(bundle))
    context = kingpost("context", str(bundle), str(tmp_path / "ctx"))
    assert checked.returncode == context.returncode == 1
    assert errors(checked) == errors(context) and len(errors(context)) == 1
    assert not (tmp_path / "ctx").exists()


def test_context_refuses_a_bundle_without_model_file(tmp_path):
    bundle = tmp_path / "no-model"
    bundle.mkdir()
    (bundle / "config.yaml").write_text("model_name: x\n")
    out = kingpost("context", str(bundle), str(tmp_path / "ctx"))
    assert out.returncode == 1 and "expected the model file model/model.py, found no such file" in out.stderr


def test_context_python_version_warning_once(tmp_path):
    bundle = tmp_path / "old-python"
    (bundle / "model").mkdir(parents=True)
    (bundle / "config.yaml").write_text("python_version: py39\n")
    (bundle / "model" / "model.py").write_text("class Model:\n    def predict(self, x):\n        return x\n")
    out = kingpost("context", str(bundle), str(tmp_path / "ctx"))
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("older than kingpost supports") == 1


@pytest.mark.parametrize("command", ["check", "serve", "predict", "context"])
def test_trt_llm_is_named_in_one_sentence(tmp_path, command):
    extra = {"predict": ["-d", "{}"], "context": [str(tmp_path / "ctx")], "serve": ["--port", "0"]}.get(command, [])
    out = kingpost(command, str(compat("trt_llm")), *extra)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = errors(out)
    assert len(lines) == 1, out.stderr
    assert "trt_llm: the bundle is served by Truss's TensorRT-LLM engine" in lines[0]


def test_trt_llm_refused_by_load():
    import kingpost as kp

    with pytest.raises(kp.BundleError, match="trt_llm: the bundle is served by Truss's TensorRT-LLM engine"):
        kp.load(compat("trt_llm"))


def test_batch_count_sentence_is_in_the_body(serve):
    server = serve(TESTS / "bundles" / "batch_wrong_length")
    r = httpx.post(server.url + "/v1/models/model:predict", json={"value": 1, "bad": True})
    assert r.status_code == 500
    assert "outputs for a batch of" in r.json()["error"] and "one output per input" in r.json()["error"]
