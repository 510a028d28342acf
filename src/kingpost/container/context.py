"""``kingpost context``: a deterministic container build context for a bundle.

Layout of the context (the same bundle always gives byte-identical files, modes and mtimes)::

    Dockerfile          see kingpost.container.dockerfile
    .dockerignore
    README.md           how to build and run it, and how secrets come at run time
    requirements.txt    the bundle's requirement lines (copied alone, before the code)
    wheels/             kingpost-<version>-py3-none-any.whl: the running kingpost
    bundle/             the bundle, without caches, venvs, VCS data or .env files

Secrets never enter it: only names are kept. A non-null ``secrets`` default in config.yaml may be a
real secret value, so the context's config.yaml has every default replaced by null.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from kingpost import defaults
from kingpost.config import CONFIG_FILENAME, Config, load_config
from kingpost.container import dockerfile
from kingpost.custom_server import docker_server
from kingpost.errors import PackagingError
from kingpost.isolated.wheel import FIXED_MTIME, write_kingpost_wheel
from kingpost.loader import require_model_file
from kingpost.requirements import requirement_lines
from kingpost.unsupported import refuse_unsupported
from kingpost.weights.sources import sources

logger = logging.getLogger(__name__)

EXTERNAL_DIR = "_external"  # external_package_dirs outside the bundle are copied to bundle/_external/<name>
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
                        ".ipynb_checkpoints", ".tox", ".nox", ".venv", ".venvs", ".idea", ".vscode"})
_SKIP_SUFFIXES = (".pyc", ".pyo")
_INDEX_OPTIONS = frozenset({"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--pre",
                            "--trusted-host", "--prefer-binary", "--only-binary", "--no-binary"})
_SKIP_FILES = frozenset({".DS_Store", ".env"})
DOCKERIGNORE = "".join(f"{p}\n" for p in (
    "README.md", *(f"**/{d}" for d in sorted(_SKIP_DIRS)), "**/*.pyc", "**/*.pyo", "**/.DS_Store", "**/.env",
    "**/.env.*",
))


def write_context(bundle_dir: Path, context_dir: Path, *, weights: str = "start") -> Path:
    """Write the build context of the bundle in ``bundle_dir`` to ``context_dir`` and return ``context_dir``.

    ``weights`` says when model_cache/weights/external_data are fetched: ``start`` (default: when
    the container starts, into its KINGPOST_CACHE_DIR) or ``bake`` (at build, in their own layer).

    ``context_dir`` must be absent, empty, or a context kingpost wrote before (it is replaced whole).
    No user code runs: only config.yaml is read. Raises ConfigError for a bad config and
    PackagingError for a context that cannot be made.
    """
    bundle_dir = Path(bundle_dir).resolve()
    config = load_config(bundle_dir)
    refuse_unsupported(config)  # what `kingpost check` refuses without running the model, refused here too
    if docker_server(config) is None:  # a bundle with its own server has no model.py
        require_model_file(bundle_dir, config)
    context_dir = Path(context_dir).resolve()
    _check_out(bundle_dir, context_dir)
    context_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{context_dir.name}.", dir=context_dir.parent))
    try:
        _fill(tmp, bundle_dir, config, skip={context_dir, tmp}, weights=weights)
        _normalize(tmp)
        if context_dir.exists():
            shutil.rmtree(context_dir)
        tmp.rename(context_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return context_dir


def _fill(context_dir: Path, bundle_dir: Path, config: Config, *, skip: set[Path], weights: str) -> None:
    declared = sources(config)
    secrets = tuple(sorted({s.secret for s in declared if s.secret is not None}))
    outside = {str(PurePosixPath(s.mount).parent) for s in declared}
    mount_dirs = tuple(sorted(d for d in outside if not d.startswith(("/app/model_cache", "/app/data"))))
    copied = context_dir / "bundle"
    _copy_tree(bundle_dir, copied, skip)
    externals = _copy_externals(bundle_dir, copied, config, skip)
    _write_config(copied / CONFIG_FILENAME, config, externals)
    (context_dir / "requirements.txt").write_text(_requirements(bundle_dir, config), encoding="utf-8")
    (context_dir / "wheels").mkdir()
    wheel = write_kingpost_wheel(context_dir / "wheels")
    title = config.model_name or bundle_dir.name
    text = dockerfile.render(config, wheel=wheel.name, title=title, weights=weights, secrets=secrets,
                             mount_dirs=mount_dirs, server=docker_server(config))
    (context_dir / "Dockerfile").write_text(text, encoding="utf-8")
    (context_dir / ".dockerignore").write_text(DOCKERIGNORE, encoding="utf-8")
    (context_dir / "README.md").write_text(_readme(config, title), encoding="utf-8")


def _check_out(bundle_dir: Path, context_dir: Path) -> None:
    if context_dir == bundle_dir or context_dir in bundle_dir.parents:
        raise PackagingError(f"the build context directory {context_dir} must not contain the bundle {bundle_dir}.")
    if context_dir.exists() and not context_dir.is_dir():
        raise PackagingError(f"the build context directory {context_dir} is a file; give a new or empty directory.")
    if context_dir.is_dir() and any(context_dir.iterdir()) and not _is_context(context_dir):
        raise PackagingError(f"the build context directory {context_dir} is not empty and was not written by kingpost; "
                             "give a new or empty directory.")


def _is_context(path: Path) -> bool:
    try:
        with (path / "Dockerfile").open(encoding="utf-8") as f:
            return f.readline().startswith(dockerfile.HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def _walk(source: Path, skip: set[Path]) -> Iterator[tuple[Path, Path]]:
    """(absolute file, path relative to source) for every file to copy, sorted, symlinks followed."""
    seen: set[Path] = set()

    def visit(directory: Path, rel: Path) -> Iterator[tuple[Path, Path]]:
        real = directory.resolve()
        if real in seen or real in skip or (directory / "pyvenv.cfg").is_file():
            return
        seen.add(real)
        for entry in sorted(directory.iterdir(), key=lambda p: p.name):
            if entry.is_dir():
                if entry.name not in _SKIP_DIRS:
                    yield from visit(entry, rel / entry.name)
            elif entry.is_file() and not _skipped_file(entry.name):
                yield entry, rel / entry.name

    yield from visit(source, Path())


def _skipped_file(name: str) -> bool:
    return name in _SKIP_FILES or name.startswith(".env.") or name.endswith(_SKIP_SUFFIXES)


def _copy_tree(source: Path, target: Path, skip: set[Path]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path, rel in _walk(source, skip):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        if path.stat().st_mode & stat.S_IXUSR:
            dest.chmod(0o755)


def _copy_externals(bundle_dir: Path, copied: Path, config: Config, skip: set[Path]) -> list[str] | None:
    """Copy external_package_dirs that lie outside the bundle; the new relative list, or None if unchanged."""
    new: list[str] = []
    changed = False
    for entry in config.external_package_dirs:
        source = (bundle_dir / entry).resolve()
        if not source.is_dir():
            raise PackagingError(f"{config.path}: external_package_dirs: expected an existing directory, "
                                 f"found no directory {source}.")
        if source == bundle_dir or bundle_dir in source.parents:
            new.append(entry)
            continue
        name = source.name
        while (copied / EXTERNAL_DIR / name).exists():
            name += "_"
        _copy_tree(source, copied / EXTERNAL_DIR / name, skip)
        new.append(f"{EXTERNAL_DIR}/{name}")
        changed = True
    return new if changed else None


def _write_config(path: Path, config: Config, externals: list[str] | None) -> None:
    dropped = sorted(name for name, default in config.secrets.items() if default is not None)
    for name in dropped:
        logger.warning("%s: secrets.%s has a default value; the build context keeps only its name "
                       "(provide it at run time).", config.path, name)
    if not dropped and externals is None:
        return  # copied byte for byte
    data: dict[str, Any] = dict(config.raw)
    if dropped:
        data["secrets"] = {name: None for name in config.secrets}
    if externals is not None:
        data["external_package_dirs"] = externals
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _requirements(bundle_dir: Path, config: Config) -> str:
    lines = requirement_lines(bundle_dir, config)
    for line in lines:
        if line.startswith((".", "/", "file:")):
            raise PackagingError(f"{config.path}: requirements: expected packages an index can install, found the "
                                 f"local path {line!r}; put it under {config.bundled_packages_dir}/ instead.")
    source = config.requirements_file or "config.yaml requirements"
    options = _index_options(bundle_dir, config)
    return f"# The bundle's requirements, from {source}.\n" + "".join(f"{line}\n" for line in [*options, *lines])


def _index_options(bundle_dir: Path, config: Config) -> list[str]:
    """The index lines of a requirements .txt (--extra-index-url, ...); other pip options are dropped."""
    if config.requirements_file is None or not config.requirements_file.endswith(".txt"):
        return []
    kept = []
    for raw in (bundle_dir / config.requirements_file).read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line.startswith("-"):
            continue
        option = re.split(r"[\s=]", line, maxsplit=1)[0]
        if option not in _INDEX_OPTIONS:
            logger.warning("%s: the pip option %s is not carried into the build context.",
                           config.requirements_file, option)
        elif re.search(r"://[^/\s]*@", line):  # user:token@host: a secret
            raise PackagingError(f"{bundle_dir / config.requirements_file}: {option}: expected an index URL without "
                                 "credentials, found one with credentials (a build context holds no secrets).")
        else:
            kept.append(line)
    return kept


def _normalize(context_dir: Path) -> None:
    """Fixed modes and mtimes, so a tarball or an image layer of the context is reproducible too."""
    for dirpath, _dirnames, filenames in os.walk(context_dir, topdown=False):
        for name in filenames:
            path = Path(dirpath, name)
            path.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)
            os.utime(path, (FIXED_MTIME, FIXED_MTIME))
        Path(dirpath).chmod(0o755)
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))


def _readme(config: Config, title: str) -> str:
    names = list(config.secrets)
    example = names[0] if names else "NAME"
    secrets = ("This bundle declares the secrets: " + ", ".join(f"`{n}`" for n in names) + ".\n"
               if names else "This bundle declares no secrets.\n")
    dropped = [n for n, v in config.secrets.items() if v is not None]
    if dropped:
        secrets += ("config.yaml gave defaults for " + ", ".join(f"`{n}`" for n in dropped) + "; they are not "
                    "copied here (a default may be a real secret), so provide them at run time.\n")
    return f"""# Build context for {json.dumps(title)}

Written by `kingpost context`; regenerate it rather than editing it.

    docker build -t IMAGE .            # or: podman build --format docker -t IMAGE .
    docker run --rm -p {defaults.PORT}:{defaults.PORT} IMAGE
    curl -s localhost:{defaults.PORT}/v1/models/model:predict -H 'Content-Type: application/json' -d '{{"inputs": 1}}'

The image serves on port {defaults.PORT} as the non-root user `{dockerfile.USER}` (uid {dockerfile.UID}).
Readiness: `GET /v1/models/model`; the HEALTHCHECK polls it.

## Secrets

No secret value is in this context or the image. {secrets}
Give each one at run time, either as an environment variable

    docker run -e KINGPOST_SECRET_{example}=... IMAGE    # TRUSS_SECRET_{example} works too

or as a file named after the secret in a mounted directory (default `/secrets`, where Truss mounts them;
another with `-e KINGPOST_SECRETS_DIR=/path`), readable by uid {dockerfile.UID}:

    docker run -v /path/on/host:/secrets:ro IMAGE
"""
