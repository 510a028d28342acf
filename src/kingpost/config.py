"""config.yaml: Truss keys with Truss defaults, plus kingpost's optional ``runtime`` additions.

Every bad value becomes one :class:`~kingpost.errors.ConfigError` sentence naming the file, the
dotted key, what was expected and what was found. Unknown keys are kept in ``Config.extra`` and
warned about once.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kingpost import defaults
from kingpost._yaml import read_yaml
from kingpost.errors import ConfigError
from kingpost.limits import Limits, parse_limits

logger = logging.getLogger(__name__)

CONFIG_FILENAME = "config.yaml"
MIN_PYTHON = (3, 10)  # kingpost's own Requires-Python: an older python_version runs on this
PYTHON_VERSIONS = tuple(f"py3{minor}" for minor in range(8, 15))  # Truss accepts py38 too
_SECRET_NAME = re.compile(r"^[-._a-zA-Z0-9]+$")
_MEMORY = re.compile(r"^\d+(\.\d+)?([KMGTPE]i?|[kmgtpe])?$")
# The Open Inference Protocol's tensor datatypes (kingpost.codecs_v2 maps them to numpy).
V2_DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                "FP16", "FP32", "FP64", "BYTES", "BF16")
_ACCELERATOR = re.compile(r"^[A-Za-z0-9_-]+(:\d+)?$")

# Keys Truss writes that change nothing for kingpost: accepted silently.
_TRUSS_BOOKKEEPING = frozenset(
    {"spec_version", "model_framework", "model_type", "live_reload", "apply_library_patches",
     "input_type", "use_local_src", "hf_cache", "model_cache", "cache_internal", "build",
     "model_repo", "external_data", "training_checkpoints", "docker_server", "trt_llm", "weights"}
)
_TRUSS_RUNTIME_KEYS = frozenset(
    {"enable_tracing_data", "enable_debug_logs", "transport", "health_checks",
     "truss_server_version_override", "is_websocket_endpoint"}
)


@dataclass(frozen=True)
class Resources:
    cpu: str | None = None
    memory: str | None = None
    use_gpu: bool = False
    accelerator: str | None = None

    @property
    def gpu_count(self) -> int:
        """GPUs one replica needs: the accelerator's count (``A10G:2`` -> 2), else 1 if use_gpu."""
        if self.accelerator:
            _, _, count = self.accelerator.partition(":")
            return int(count) if count else 1
        return 1 if self.use_gpu else 0


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    max_wait_ms: float


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the Open Inference Protocol: name, datatype (FP32, BYTES, ...), shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Signature:
    """The optional ``signature`` section: the model's V2 inputs and outputs, for metadata and checks."""

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()


@dataclass(frozen=True)
class RuntimeConfig:
    predict_concurrency: int = 1
    streaming_read_timeout: float = defaults.STREAMING_READ_TIMEOUT_S
    batching: Batching | None = None
    max_queue: int | None = None
    request_timeout_s: float | None = None
    max_request_bytes: int = defaults.MAX_REQUEST_BYTES
    workers: int = 1
    ray: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    cors: dict[str, Any] = field(default_factory=dict)  # validated by kingpost.server.cors


@dataclass(frozen=True)
class Config:
    """A validated config.yaml. ``path`` is the file it came from (for error sentences)."""

    path: Path
    model_name: str | None = None
    description: str | None = None
    model_metadata: dict[str, Any] = field(default_factory=dict)
    model_module_dir: str = "model"
    model_class_filename: str = "model.py"
    model_class_name: str = "Model"
    data_dir: str = "data"
    bundled_packages_dir: str = "packages"
    external_package_dirs: tuple[str, ...] = ()
    examples_filename: str = "examples.yaml"
    python_version: str = "py311"
    requirements: tuple[str, ...] = ()
    requirements_file: str | None = None
    system_packages: tuple[str, ...] = ()
    environment_variables: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str | None] = field(default_factory=dict)
    resources: Resources = Resources()
    runtime: RuntimeConfig = RuntimeConfig()
    build_commands: tuple[str, ...] = ()
    base_image: str | None = None
    signature: Signature | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def python_version_tuple(self) -> tuple[int, int]:
        return 3, int(self.python_version[3:])


def current_python_version() -> str:
    return f"py{sys.version_info[0]}{sys.version_info[1]}"


def load_config(bundle_dir: str | Path) -> Config:
    """Read and validate ``<bundle_dir>/config.yaml`` (a missing file is a ConfigError too)."""
    path = Path(bundle_dir) / CONFIG_FILENAME
    if not path.is_file():
        raise ConfigError(path, "", "a config.yaml in the bundle directory", "<no such file>")
    return parse_config(read_yaml(path), path)


def parse_config(data: Any, path: Path) -> Config:
    """Validate the parsed YAML ``data`` of the file ``path``."""
    if data is None:
        data = {}
    r = _Reader(path, data, "")
    unknown = {k: v for k, v in data.items() if k not in _KNOWN and k not in _TRUSS_BOOKKEEPING}
    for key in unknown:
        logger.warning("%s: unknown key %r is kept and ignored.", path, key)
    requirements = r.str_list("requirements")
    requirements_file = r.opt_str("requirements_file")
    if requirements and requirements_file:
        raise ConfigError(path, "requirements_file", "either requirements or requirements_file, not both",
                          f"<both: {len(requirements)} requirements and {requirements_file!r}>")
    python_version = r.opt_str("python_version") or "py311"
    if python_version not in PYTHON_VERSIONS:
        raise ConfigError(path, "python_version", f"one of {', '.join(PYTHON_VERSIONS)}", python_version)
    base_image = r.mapping("base_image")
    image = _Reader(path, base_image, "base_image.").opt_str("image") if base_image else None
    return Config(
        path=path,
        model_name=r.opt_str("model_name"),
        description=r.opt_str("description"),
        model_metadata=r.mapping("model_metadata"),
        model_module_dir=r.opt_str("model_module_dir") or "model",
        model_class_filename=r.opt_str("model_class_filename") or "model.py",
        model_class_name=r.opt_str("model_class_name") or "Model",
        data_dir=r.opt_str("data_dir") or "data",
        bundled_packages_dir=r.opt_str("bundled_packages_dir") or "packages",
        external_package_dirs=r.str_list("external_package_dirs"),
        examples_filename=r.opt_str("examples_filename") or "examples.yaml",
        python_version=python_version,
        requirements=requirements,
        requirements_file=requirements_file,
        system_packages=r.str_list("system_packages"),
        environment_variables=_environment(r),
        secrets=_secrets(r),
        resources=_resources(_Reader(path, r.mapping("resources"), "resources.")),
        runtime=_runtime(_Reader(path, r.mapping("runtime"), "runtime.")),
        build_commands=r.str_list("build_commands"),
        base_image=image,
        signature=_signature(r),
        extra=unknown,
        raw=dict(data),
    )


_KNOWN = frozenset(
    {"model_name", "description", "model_metadata", "model_module_dir", "model_class_filename",
     "model_class_name", "data_dir", "bundled_packages_dir", "external_package_dirs",
     "examples_filename", "python_version", "requirements", "requirements_file", "system_packages",
     "environment_variables", "secrets", "resources", "runtime", "build_commands", "base_image",
     "signature"}
)


def _environment(r: _Reader) -> dict[str, str]:
    env = r.mapping("environment_variables")
    out = {}
    for name, value in env.items():
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(r.path, f"environment_variables.{name}", "a string, number or boolean", value)
        out[str(name)] = str(value)
    return out


def _secrets(r: _Reader) -> dict[str, str | None]:
    secrets = r.mapping("secrets")
    for name, value in secrets.items():
        if not isinstance(name, str) or not _SECRET_NAME.match(name):
            raise ConfigError(r.path, "secrets", "secret names of letters, digits, '-', '_' and '.'", name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(r.path, f"secrets.{name}", "a string default or null", value)
    return dict(secrets)


def _signature(r: _Reader) -> Signature | None:
    raw = r.mapping("signature")
    if not raw:
        return None
    s = _Reader(r.path, raw, "signature.")
    s.warn_unknown({"inputs", "outputs"})
    sides = []
    for side in ("inputs", "outputs"):
        items = s.get(side) or []
        if not isinstance(items, list):
            raise s.fail(side, "a list of {name, datatype, shape} mappings")
        tensors: list[TensorSpec] = []
        for i, item in enumerate(items):
            t = _Reader(r.path, item, f"signature.{side}[{i}].")
            name = t.opt_str("name")
            if not name or any(x.name == name for x in tensors):
                raise t.fail("name", f"a {'unique ' if name else ''}tensor name")
            datatype = t.get("datatype")
            if datatype not in V2_DATATYPES:
                raise t.fail("datatype", "one of " + ", ".join(V2_DATATYPES))
            shape = t.get("shape")
            if not isinstance(shape, list) or not all(type(d) is int and d >= -1 for d in shape):
                raise t.fail("shape", "a list of sizes, each an integer >= 0 or -1 for any size")
            tensors.append(TensorSpec(name, datatype, tuple(shape)))
        sides.append(tuple(tensors))
    return Signature(*sides)


def _resources(r: _Reader) -> Resources:
    r.warn_unknown({"cpu", "memory", "use_gpu", "accelerator", "node_count", "instance_type"})
    cpu = r.get("cpu")
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, str | int | float)):
        raise ConfigError(r.path, "resources.cpu", "a CPU count such as 1, 0.5 or \"500m\"", cpu)
    memory = r.get("memory")
    if memory is not None and (isinstance(memory, bool) or not _MEMORY.match(str(memory))):
        raise ConfigError(r.path, "resources.memory", "a size such as \"2Gi\" or \"512Mi\"", memory)
    accelerator = r.opt_str("accelerator")
    if accelerator is not None and not _ACCELERATOR.match(accelerator):
        raise ConfigError(r.path, "resources.accelerator", "a GPU type with an optional count, such as \"A10G:2\"",
                          accelerator)
    return Resources(
        cpu=None if cpu is None else str(cpu),
        memory=None if memory is None else str(memory),
        use_gpu=r.boolean("use_gpu", False) or accelerator is not None,
        accelerator=accelerator,
    )


def _runtime(r: _Reader) -> RuntimeConfig:
    r.warn_unknown({f.name for f in RuntimeConfig.__dataclass_fields__.values()} | _TRUSS_RUNTIME_KEYS)
    batching_raw = r.mapping("batching")
    batching = None
    if batching_raw:
        b = _Reader(r.path, batching_raw, "runtime.batching.")
        b.warn_unknown({"max_batch_size", "max_wait_ms"})
        batching = Batching(max_batch_size=b.integer("max_batch_size", 8, minimum=1),
                            max_wait_ms=b.number("max_wait_ms", 10, minimum=0))
    return RuntimeConfig(
        predict_concurrency=r.integer("predict_concurrency", 1, minimum=1),
        streaming_read_timeout=r.number("streaming_read_timeout", defaults.STREAMING_READ_TIMEOUT_S, minimum=0),
        batching=batching,
        max_queue=r.opt_int("max_queue", minimum=1),
        request_timeout_s=r.opt_number("request_timeout_s"),
        max_request_bytes=r.integer("max_request_bytes", defaults.MAX_REQUEST_BYTES, minimum=1),
        workers=r.integer("workers", 1, minimum=1),
        ray=r.mapping("ray"),
        limits=parse_limits(_Reader(r.path, r.mapping("limits"), "runtime.limits.")),
        cors=r.mapping("cors"),
    )


class _Reader:
    """Typed access to one mapping of the config, raising sentences with dotted keys."""

    def __init__(self, path: Path, data: Any, prefix: str) -> None:
        if not isinstance(data, dict):
            key = prefix.rstrip(".")
            raise ConfigError(path, key, "a mapping of keys to values", _kind(data))
        self.path, self.data, self.prefix = path, data, prefix

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(self.path, self.prefix + key, expected, self.data.get(key))

    def warn_unknown(self, known: set[str] | frozenset[str]) -> None:
        for key in self.data:
            if key not in known:
                logger.warning("%s: unknown key %r is kept and ignored.", self.path, self.prefix + str(key))

    def opt_str(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, "a string")
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "a list of strings")
        return tuple(value)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(self.path, self.prefix + key, "a mapping of keys to values", _kind(value))
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"an integer >= {minimum}")
        return value

    def opt_int(self, key: str, *, minimum: int) -> int | None:
        return None if self.data.get(key) is None else self.integer(key, 0, minimum=minimum)

    def number(self, key: str, default: float, *, minimum: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(key, f"a number >= {minimum:g}")
        return float(value)

    def opt_number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(key, "a number of seconds > 0")
        return float(value)


def _kind(value: Any) -> Any:
    """What to show as "found" where a mapping was expected: a scalar as itself (quoted once, by
    ConfigError), anything bigger by its shape."""
    if isinstance(value, list):
        return f"<a list of {len(value)} items>"
    if isinstance(value, str | int | float | bool):
        return value
    return f"<{type(value).__name__}>"


def read_examples(path: Path) -> dict[str, Any]:
    """examples.yaml as ``{name: input}`` (empty when there is none)."""
    if not path.is_file():
        return {}
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, list):
        raise ConfigError(path, "", "a list of {name, input} entries", f"<{type(data).__name__}>")
    examples = {}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "input" not in entry:
            raise ConfigError(path, f"[{i}]", "a mapping with a string 'name' and an 'input'", entry)
        examples[entry["name"]] = entry["input"]
    return examples
