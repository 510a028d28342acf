"""Serve deployment options from a bundle's config: its resources, ``runtime.ray``, then overrides.

Pure data, no Ray: ``cpu`` -> ``num_cpus`` and ``use_gpu``/``accelerator`` -> ``num_gpus`` per
replica; ``runtime.ray`` may hold the Serve options in :data:`SERVE_OPTIONS`; arguments (the CLI's
``--replicas`` / ``--autoscale``) replace what they name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from kingpost import defaults
from kingpost.config import Config
from kingpost.errors import ConfigError

logger = logging.getLogger(__name__)

# Serve's own default (5) makes the proxy hold requests back and retry with backoff while the
# replica could queue them for its predict lock at no cost: on the pipeline bench, c=64 against
# one replica gave 51 req/s with 32 and 115 with 128.
# runtime.ray keys handed to serve.deployment(...).options(); Serve validates their values.
SERVE_OPTIONS = frozenset(
    {"num_replicas", "autoscaling_config", "max_ongoing_requests", "max_queued_requests",
     "ray_actor_options", "health_check_period_s", "health_check_timeout_s",
     "graceful_shutdown_timeout_s", "graceful_shutdown_wait_loop_s"}
)


def deployment_options(
    config: Config,
    *,
    num_replicas: int | None = None,
    autoscaling: Mapping[str, Any] | None = None,
    max_ongoing_requests: int | None = None,
) -> dict[str, Any]:
    """Serve deployment options for a bundle: its resources, then ``runtime.ray``, then these."""
    if num_replicas is not None and autoscaling is not None:
        raise ValueError("give num_replicas or autoscaling, not both")
    options = _runtime_ray(config)
    actor = {**_resources(config), **options.get("ray_actor_options", {})}
    if actor:
        options["ray_actor_options"] = actor
    if num_replicas is not None:
        options.pop("autoscaling_config", None)
        options["num_replicas"] = num_replicas
    if autoscaling is not None:
        options.pop("num_replicas", None)
        options["autoscaling_config"] = {**options.get("autoscaling_config", {}), **autoscaling}
    if max_ongoing_requests is not None:
        options["max_ongoing_requests"] = max_ongoing_requests
    options.setdefault("max_ongoing_requests", _default_max_ongoing(config))
    return options


def parse_autoscale(text: str) -> dict[str, int]:
    """``"1:4"`` -> ``{"min_replicas": 1, "max_replicas": 4}`` (for ``--autoscale MIN:MAX``)."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if match is None or int(match[1]) > int(match[2]) or int(match[2]) < 1:
        raise ValueError(f"--autoscale: expected MIN:MAX replicas such as 1:4, found {text!r}.")
    return {"min_replicas": int(match[1]), "max_replicas": int(match[2])}



def _runtime_ray(config: Config) -> dict[str, Any]:
    raw = dict(config.runtime.ray)
    for key in [k for k in raw if k not in SERVE_OPTIONS]:
        logger.warning("%s: unknown key %r is kept and ignored.", config.path, f"runtime.ray.{key}")
        del raw[key]
    for key in ("num_replicas", "max_ongoing_requests", "max_queued_requests"):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1) \
                and not (key == "num_replicas" and value == "auto") \
                and not (key == "max_queued_requests" and value == -1):
            raise ConfigError(config.path, f"runtime.ray.{key}", "an integer >= 1", value)
    for key in ("autoscaling_config", "ray_actor_options"):
        if not isinstance(raw.get(key, {}), dict):
            raise ConfigError(config.path, f"runtime.ray.{key}", "a mapping of keys to values", raw[key])
    if isinstance(raw.get("num_replicas"), int) and raw.get("autoscaling_config"):
        raise ConfigError(config.path, "runtime.ray", "num_replicas or autoscaling_config, not both",
                          "<both>")
    return {k: v for k, v in raw.items() if v is not None}


def _resources(config: Config) -> dict[str, float]:
    out: dict[str, float] = {}
    cpu = config.resources.cpu
    if cpu is not None:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", cpu.strip())
        if match is None:
            raise ConfigError(config.path, "resources.cpu", 'a CPU count such as 1, 0.5 or "500m"', cpu)
        out["num_cpus"] = float(match[1]) / (1000 if match[2] else 1)
    if config.resources.gpu_count:
        out["num_gpus"] = config.resources.gpu_count
    return out


def _default_max_ongoing(config: Config) -> int:
    rt = config.runtime
    batch = rt.batching.max_batch_size * 2 if rt.batching else 0
    return max(defaults.RAY_MAX_ONGOING_REQUESTS, batch, (rt.max_queue or 0) + rt.predict_concurrency)


