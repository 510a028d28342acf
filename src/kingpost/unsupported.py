"""Config keys that make a bundle something kingpost cannot run, named before anything else happens.

A key listed here changes what the bundle *is* (not how it is served), so ``check``, ``serve``,
``predict`` (and ``kingpost.load``) and ``context`` refuse such a bundle with one sentence instead
of failing later on a missing argument or file. Each entry says what the bundle needs.
"""

from __future__ import annotations

from kingpost.config import Config
from kingpost.errors import BundleError

UNSUPPORTED: dict[str, str] = {
    "trt_llm": ("the bundle is served by Truss's TensorRT-LLM engine (Briton), which kingpost does not provide; "
                "serve it with Truss, or give it a model/model.py and drop trt_llm"),
}
"""Key -> what the bundle needs that kingpost does not provide (a key whose value is null or empty is fine)."""


def refuse_unsupported(config: Config) -> None:
    """Raise BundleError naming the first key of UNSUPPORTED the bundle sets."""
    for key, needs in UNSUPPORTED.items():
        if config.raw.get(key):
            raise BundleError(f"{config.path}: {key}: {needs}.")
