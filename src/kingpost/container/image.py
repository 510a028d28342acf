"""``kingpost image``: write the build context, then build it with the container engine found.

Engines, in order: Docker when its daemon answers (``docker info``), else podman, else buildah
(``buildah bud``). podman and buildah build in Docker's image format, which keeps the HEALTHCHECK
(the OCI format drops it). The engine's own progress goes to stderr.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kingpost.config import load_config
from kingpost.container.context import write_context
from kingpost.errors import PackagingError


def build_image(bundle_dir: Path, *, tag: str | None, context_dir: Path | None) -> str:
    """Build the bundle's image and return its tag (default ``kingpost-<model_name>:latest``).

    The context goes to ``context_dir``, or to a temporary directory that is removed after a
    successful build. When no engine is found or the build fails, the context is kept and the
    PackagingError says where it is.
    """
    config = load_config(bundle_dir)
    tag = tag or default_tag(config.model_name or Path(bundle_dir).resolve().name)
    temporary = context_dir is None
    context = Path(tempfile.mkdtemp(prefix="kingpost-context-")) / "context" if context_dir is None else context_dir
    try:
        write_context(bundle_dir, context)
    except BaseException:
        if temporary:
            shutil.rmtree(context.parent, ignore_errors=True)
        raise
    engine = find_engine()
    if engine is None:
        raise PackagingError(
            f"no container engine found (docker with a running daemon, podman or buildah); "
            f"the build context is in {context}, build it with: docker build -t {tag} {context}"
        )
    status = subprocess.run(build_command(engine, tag, context), stdout=sys.stderr, check=False).returncode
    if status != 0:
        raise PackagingError(f"{Path(engine).name} could not build the image (exit status {status}); "
                             f"the build context is kept in {context}.")
    if temporary:
        shutil.rmtree(context.parent, ignore_errors=True)
    return tag


def find_engine() -> str | None:
    """The path of the first usable engine: docker only if its daemon answers."""
    docker = shutil.which("docker")
    if docker is not None and _answers(docker):
        return docker
    return shutil.which("podman") or shutil.which("buildah")


def build_command(engine: str, tag: str, context: Path) -> list[str]:
    name = Path(engine).name
    if name == "docker":
        return [engine, "build", "--tag", tag, str(context)]
    if name == "buildah":  # buildah keeps no layer cache unless told to
        return [engine, "bud", "--format", "docker", "--layers", "--tag", tag, str(context)]
    return [engine, "build", "--format", "docker", "--tag", tag, str(context)]


def default_tag(name: str) -> str:
    """``kingpost-<name>:latest``, the name reduced to what an image reference allows."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "model"
    return f"kingpost-{slug}:latest"


def _answers(docker: str) -> bool:
    try:
        return subprocess.run([docker, "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
