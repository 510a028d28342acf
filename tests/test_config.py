"""config.yaml: Truss keys and defaults, and one exact sentence (file, key, expected, found) per bad value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import kingpost
from conftest import bundle_path
from kingpost.config import Config, load_config
from kingpost.errors import BundleError, ConfigError


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "config.yaml").write_text(text)
    return tmp_path


BAD_CONFIGS = {
    "wrong type": (
        "model_name: [a, b]\n",
        "model_name: expected a string, found ['a', 'b'].",
    ),
    "wrong type, nested": (
        "runtime:\n  predict_concurrency: two\n",
        "runtime.predict_concurrency: expected an integer >= 1, found 'two'.",
    ),
    "a number where a mapping belongs": (
        "runtime: 3\n",
        "runtime: expected a mapping of keys to values, found 3.",
    ),
    "a string where a mapping belongs": (
        "resources: big\n",
        "resources: expected a mapping of keys to values, found 'big'.",
    ),
    "not a mapping at all": (
        "- a\n- b\n",
        "expected a mapping of keys to values, found <a list of 2 items>.",
    ),
    "requirements and requirements_file": (
        "requirements: [numpy]\nrequirements_file: requirements.txt\n",
        "requirements_file: expected either requirements or requirements_file, not both, "
        "found <both: 1 requirements and 'requirements.txt'>.",
    ),
    "negative predict_concurrency": (
        "runtime:\n  predict_concurrency: -1\n",
        "runtime.predict_concurrency: expected an integer >= 1, found -1.",
    ),
    "boolean predict_concurrency": (
        "runtime:\n  predict_concurrency: true\n",
        "runtime.predict_concurrency: expected an integer >= 1, found True.",
    ),
    "zero max_batch_size": (
        "runtime:\n  batching:\n    max_batch_size: 0\n",
        "runtime.batching.max_batch_size: expected an integer >= 1, found 0.",
    ),
    "bad secret name": (
        "secrets:\n  'api token': null\n",
        "secrets: expected secret names of letters, digits, '-', '_' and '.', found 'api token'.",
    ),
    "secret default not a string": (
        "secrets:\n  token: 12\n",
        "secrets.token: expected a string default or null, found 12.",
    ),
    "unknown python_version": (
        "python_version: py27\n",
        "python_version: expected one of py38, py39, py310, py311, py312, py313, py314, found 'py27'.",
    ),
    "environment variable not a scalar": (
        "environment_variables:\n  MODE: [fast]\n",
        "environment_variables.MODE: expected a string, number or boolean, found ['fast'].",
    ),
    "bad memory": (
        "resources:\n  memory: lots\n",
        "resources.memory: expected a size such as \"2Gi\" or \"512Mi\", found 'lots'.",
    ),
    "YAML syntax error": (
        "model_name: x\n  bad: indent\n",
        "expected valid YAML, found <a syntax error at line 2, column 6: mapping values are not allowed "
        "in this context>.",
    ),
    "zero stream_buffer_bytes": (
        "runtime:\n  limits:\n    stream_buffer_bytes: 0\n",
        "runtime.limits.stream_buffer_bytes: expected an integer >= 1, found 0.",
    ),
    "stream_buffer_bytes as a size string": (
        "runtime:\n  limits:\n    stream_buffer_bytes: 1Mi\n",
        "runtime.limits.stream_buffer_bytes: expected an integer >= 1, found '1Mi'.",
    ),
    "duplicate key": (
        "model_name: a\nmodel_name: b\n",
        "model_name: expected each key once, found <the key twice, on lines 1 and 2>.",
    ),
    "duplicate nested key": (
        "runtime:\n  predict_concurrency: 1\n  predict_concurrency: 2\n",
        "runtime.predict_concurrency: expected each key once, found <the key twice, on lines 2 and 3>.",
    ),
}


@pytest.mark.parametrize("text, message", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path / 'config.yaml'}: {message}"
    assert "\n" not in str(info.value)


def test_bad_config_fails_kingpost_load(tmp_path: Path) -> None:
    write_config(tmp_path, "runtime:\n  predict_concurrency: -1\n")
    with pytest.raises(ConfigError, match=r"runtime\.predict_concurrency: expected an integer >= 1, found -1\.$"):
        kingpost.load(tmp_path)


def test_config_error_keeps_its_parts(tmp_path: Path) -> None:
    write_config(tmp_path, "runtime:\n  predict_concurrency: -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    error = info.value
    assert (error.file, error.key, error.expected, error.found) == (
        str(tmp_path / "config.yaml"), "runtime.predict_concurrency", "an integer >= 1", -1)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'config.yaml'}: expected a config.yaml in the bundle directory, found <no such file>.")


def test_missing_model_file_is_reported_by_load(tmp_path: Path) -> None:
    write_config(tmp_path, "model_name: empty\n")
    with pytest.raises(BundleError) as info:
        kingpost.load(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'config.yaml'}: model_module_dir/model_class_filename: expected the model file "
        "model/model.py, found no such file.")


def test_missing_bundle_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as info:
        kingpost.load(tmp_path / "nope")
    assert str(info.value) == f"{tmp_path / 'nope'}: expected a bundle directory, found nothing."


def test_unknown_keys_are_kept_and_warned_about_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_config(tmp_path, "model_name: x\nserving_flavour: fast\n")
    with caplog.at_level(logging.WARNING, logger="kingpost"):
        config = load_config(tmp_path)
    assert config.extra == {"serving_flavour": "fast"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{tmp_path / 'config.yaml'}: unknown key 'serving_flavour' is kept and ignored."]


def test_stream_room_is_in_bytes_and_the_chunk_key_it_replaced_still_loads(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_config(write_config(tmp_path, "model_name: x\n")).runtime.limits.stream_buffer_bytes == 1024 * 1024
    write_config(tmp_path, "runtime:\n  limits:\n    stream_buffer_bytes: 65536\n")
    assert load_config(tmp_path).runtime.limits.stream_buffer_bytes == 65536
    write_config(tmp_path, "runtime:\n  limits:\n    stream_buffer_chunks: 64\n")
    with caplog.at_level(logging.WARNING, logger="kingpost"):
        config = load_config(tmp_path)
    assert config.runtime.limits.stream_buffer_bytes == 1024 * 1024
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{tmp_path / 'config.yaml'}: runtime.limits.stream_buffer_chunks is no longer read "
                        "(the bound is in bytes now): set runtime.limits.stream_buffer_bytes instead."]


def test_defaults_are_truss_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ""))
    assert (config.model_module_dir, config.model_class_filename, config.model_class_name) == (
        "model", "model.py", "Model")
    assert (config.data_dir, config.bundled_packages_dir, config.examples_filename) == (
        "data", "packages", "examples.yaml")
    assert config.python_version == "py311"
    assert config.runtime.predict_concurrency == 1
    assert config.runtime.streaming_read_timeout == 60
    assert config.runtime.batching is None
    assert config.secrets == {}
    assert config.extra == {}


def test_values_are_normalised(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, (
        "environment_variables:\n  WORKERS: 4\n  DEBUG: true\n"
        "resources:\n  cpu: 2\n  accelerator: A10G:2\n"
        "runtime:\n  batching:\n    max_batch_size: 16\n"
    )))
    assert config.environment_variables == {"WORKERS": "4", "DEBUG": "True"}
    assert config.resources.cpu == "2"
    assert config.resources.use_gpu is True
    assert config.resources.gpu_count == 2
    assert config.runtime.batching is not None
    assert (config.runtime.batching.max_batch_size, config.runtime.batching.max_wait_ms) == (16, 10)


def test_truss_written_config_loads_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kingpost"):
        config = load_config(bundle_path("truss_written"))
    assert isinstance(config, Config)
    assert caplog.records == []
    assert config.model_name == "truss-written"
    assert config.secrets == {"token": None}
    assert config.resources.cpu == "1"
    assert config.resources.memory == "2Gi"
    assert config.raw["model_framework"] == "custom"  # the model still sees every key Truss wrote


def test_examples_file_errors_are_one_sentence(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.py").write_text("class Model:\n    def predict(self, x):\n        return x\n")
    (tmp_path / "examples.yaml").write_text("- name: a\n  input: 1\n- input: 2\n")
    bundle = kingpost.load(tmp_path)
    with pytest.raises(ConfigError) as info:
        bundle.examples()
    assert str(info.value) == (
        f"{tmp_path / 'examples.yaml'}: [1]: expected a mapping with a string 'name' and an 'input', "
        "found {'input': 2}.")


BAD_SIGNATURES = {
    "not a list": ("signature:\n  inputs: x\n",
                   "signature.inputs: expected a list of {name, datatype, shape} mappings, found 'x'."),
    "unknown datatype": ("signature:\n  inputs:\n    - {name: a, datatype: FLOAT, shape: [1]}\n",
                         "signature.inputs[0].datatype: expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, "
                         "INT16, INT32, INT64, FP16, FP32, FP64, BYTES, BF16, found 'FLOAT'."),
    "bad size": ("signature:\n  outputs:\n    - {name: y, datatype: FP32, shape: [-2]}\n",
                 "signature.outputs[0].shape: expected a list of sizes, each an integer >= 0 or -1 for any size, "
                 "found [-2]."),
    "twice": ("signature:\n  outputs:\n    - {name: y, datatype: FP32, shape: []}\n"
              "    - {name: y, datatype: FP32, shape: []}\n",
              "signature.outputs[1].name: expected a unique tensor name, found 'y'."),
}


@pytest.mark.parametrize("text, message", BAD_SIGNATURES.values(), ids=BAD_SIGNATURES.keys())
def test_a_bad_signature_is_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path / 'config.yaml'}: {message}"


def test_the_signature_section_is_read() -> None:
    signature = load_config(bundle_path("v2_linear")).signature
    assert signature is not None
    assert [(t.name, t.datatype, t.shape) for t in signature.inputs] == [("features", "FP32", (-1, 3))]
    assert [t.name for t in signature.outputs] == ["prediction", "label"]
    assert load_config(bundle_path("echo")).signature is None
