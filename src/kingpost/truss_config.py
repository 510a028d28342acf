"""The ``config`` a Model's ``__init__`` receives: Truss's full config dict, defaults filled in.

Truss's server hands a model the dict of its whole ``TrussConfig`` (``to_dict(verbose=True)``),
so models read keys they never wrote (``config["runtime"]["predict_concurrency"]``,
``config["live_reload"]``). The defaults below are the ones Truss 0.18 writes; the bundle's own
values are merged over them, mapping by mapping.
"""

from __future__ import annotations

import copy
from typing import Any

from kingpost.config import current_python_version

_DEFAULTS: dict[str, Any] = {
    "model_name": None,
    "model_metadata": {},
    "description": None,
    "examples_filename": "examples.yaml",
    "data_dir": "data",
    "external_data": None,
    "external_package_dirs": [],
    "python_version": None,  # the running interpreter's, as Truss writes it
    "base_image": None,
    "requirements_file": None,
    "requirements": [],
    "system_packages": [],
    "environment_variables": {},
    "secrets": {},
    "resources": {"cpu": "1", "memory": "2Gi", "accelerator": None, "use_gpu": False},
    "runtime": {
        "predict_concurrency": 1,
        "streaming_read_timeout": 60,
        "enable_tracing_data": False,
        "enable_debug_logs": False,
        "transport": {"kind": "http"},
        "is_websocket_endpoint": False,
        "health_checks": {"restart_check_delay_seconds": None, "restart_threshold_seconds": None,
                          "stop_traffic_threshold_seconds": None, "startup_threshold_seconds": None},
        "oidc": {"enabled": None},
        "remote_ssh": {"enabled": False},
        "egress_restrictions": None,
        "truss_server_version_override": None,
    },
    "build": {"model_server": "TrussServer", "arguments": {}, "secret_to_path_mapping": {}, "no_cache": False},
    "build_commands": [],
    "docker_server": None,
    "model_cache": [],
    "weights": [],
    "trt_llm": None,
    "training_checkpoints": None,
    "input_type": "Any",
    "model_framework": "custom",
    "model_type": "Model",
    "model_module_dir": "model",
    "model_class_filename": "model.py",
    "model_class_name": "Model",
    "bundled_packages_dir": "packages",
    "use_local_src": False,
    "cache_internal": [],
    "live_reload": False,
    "apply_library_patches": True,
    "spec_version": "2.0",
}


def full_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Truss's defaults with ``raw`` (the parsed config.yaml) merged over them; a new dict each call."""
    merged = _merge(copy.deepcopy(_DEFAULTS), raw)
    if merged["python_version"] is None:
        merged["python_version"] = current_python_version()
    return merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
