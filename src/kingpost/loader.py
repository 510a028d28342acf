"""Import a bundle's model.py and build its Model, turning every failure into one sentence.

Each bundle's model directory is imported as a package of its own unique name, so two bundles
that both have ``model/model.py`` load side by side in one process. While model.py is executed,
the name ``model`` also points at that package, so Truss-style ``from model.helpers import x``
keeps working. The first bundle to use the name keeps it afterwards, as under Truss, so that
imports inside hooks (``def load(self): from model.helpers import x``) and pickles of classes
from ``model.*`` work too. Once two bundles have claimed the same name, neither keeps it: an
import of ``model`` after loading then fails loudly instead of reaching the other bundle.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from kingpost import surface
from kingpost.config import Config
from kingpost.environment import read_environment
from kingpost.errors import BundleError, ConfigError, MissingRequirementError, ModelLoadError, describe
from kingpost.requirements import requirement_import_name, requirement_lines
from kingpost.surface import Surface
from kingpost.truss_config import full_config
from kingpost.types import Hook, HookKind, Secrets

logger = logging.getLogger(__name__)

HOOK_NAMES = ("load", *surface.CALLED)
INIT_KWARGS = ("config", "data_dir", "secrets", "environment")
_IMPORT_LOCK = threading.Lock()
_CONTESTED = ""
_ALIAS_OWNERS: dict[str, str] = {}  # "model" -> the package of the bundle that keeps the name

@dataclass(frozen=True)
class ModelSpec:
    """What a Model class offers, found without constructing it."""

    cls: type
    file: Path
    kinds: Mapping[str, HookKind]  # hook name -> kind, only for the hooks the class defines
    surface: Surface  # how each method is called, typed inputs and outputs (Truss's rules)

    @property
    def streams(self) -> bool:
        kind = self.kinds.get("predict")
        return kind is not None and kind.streams


@dataclass(frozen=True)
class ModelHooks:
    """A constructed Model's bound hooks; absent hooks are None."""

    instance: Any
    spec: ModelSpec

    def hook(self, name: str) -> Hook | None:
        return getattr(self.instance, name) if name in self.spec.kinds else None


def model_file(bundle_dir: Path, config: Config) -> Path:
    return bundle_dir / config.model_module_dir / config.model_class_filename


def require_model_file(bundle_dir: Path, config: Config) -> Path:
    """The model file, which must exist (checked by ``kingpost.load`` before any user code runs)."""
    file = model_file(bundle_dir, config)
    if not file.is_file() and config.raw.get("docker_server") is not None:
        raise BundleError(f"{config.path}: docker_server: this bundle brings its own server instead of a model.py, "
                          "so it runs only as a server: kingpost serve.")
    if not file.is_file():
        raise BundleError(
            f"{config.path}: model_module_dir/model_class_filename: expected the model file "
            f"{file.relative_to(bundle_dir) if file.is_relative_to(bundle_dir) else file}, found no such file."
        )
    return file


def import_model_class(bundle_dir: Path, config: Config) -> ModelSpec:
    """Import model.py and inspect its Model class; runs the module's top level, not the class."""
    file = require_model_file(bundle_dir, config)
    _extend_sys_path(bundle_dir, config)
    module = _import_module(bundle_dir, config, file)
    cls = getattr(module, config.model_class_name, None)
    if not isinstance(cls, type):
        found = "nothing by that name" if cls is None else f"a {type(cls).__name__}"
        raise ModelLoadError(f"{rel(bundle_dir, file)}: expected a class {config.model_class_name!r}, found {found}.")
    kinds = {name: hook_kind(getattr(cls, name)) for name in HOOK_NAMES if callable(getattr(cls, name, None))}
    where = rel(bundle_dir, file)
    spec = ModelSpec(cls=cls, file=file, kinds=kinds, surface=surface.inspect_surface(cls, where))
    if spec.streams and "postprocess" in kinds:
        raise ModelLoadError(
            f"{rel(bundle_dir, file)}: {cls.__name__}.predict streams (it is a generator), so it cannot have a "
            "postprocess; move that work into predict or drop postprocess."
        )
    for name in ("load", "is_healthy", "setup_environment"):  # pre/postprocess may be generators, as in Truss
        if name in kinds and kinds[name].streams:
            raise ModelLoadError(f"{where}: {cls.__name__}.{name} is a generator; it cannot stream.")
    return spec


def hook_kind(fn: Any) -> HookKind:
    if inspect.isasyncgenfunction(fn):
        return HookKind.ASYNC_GENERATOR
    if inspect.iscoroutinefunction(fn):
        return HookKind.ASYNC
    if inspect.isgeneratorfunction(fn):
        return HookKind.SYNC_GENERATOR
    return HookKind.SYNC


def construct(spec: ModelSpec, bundle_dir: Path, config: Config, secrets: Secrets, *,
              data_dir: Path | None = None, extra: Mapping[str, Any] | None = None) -> ModelHooks:
    """Build the Model, passing only the keyword arguments its ``__init__`` declares.

    ``data_dir`` replaces the bundle's own (a view that adds external_data); ``extra`` offers more
    keyword arguments (``lazy_data_resolver``).
    """
    params = _init_params(spec)
    offered = {*INIT_KWARGS, *(extra or {})}
    wanted = offered if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params) else {
        p.name for p in params if p.name in offered}
    kwargs: dict[str, Any] = {}
    if "config" in wanted:  # Truss's whole config dict, defaults filled in
        kwargs["config"] = full_config(dict(config.raw))
    if "data_dir" in wanted:
        kwargs["data_dir"] = data_dir or data_directory(bundle_dir, config)
    if "secrets" in wanted:
        kwargs["secrets"] = secrets
    if "environment" in wanted:
        kwargs["environment"] = read_environment()[1]
    kwargs.update((name, value) for name, value in (extra or {}).items() if name in wanted)
    try:
        instance = spec.cls(**kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"{rel(bundle_dir, spec.file)}: {spec.cls.__name__}() raised {describe(exc, end=True)}"
        ) from exc
    return ModelHooks(instance=instance, spec=spec)


def accepts(spec: ModelSpec, name: str) -> bool:
    """Whether the Model's ``__init__`` takes the keyword ``name`` (by name or through ``**kwargs``)."""
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in _init_params(spec))


def waits_for_data(spec: ModelSpec) -> bool:
    """Whether the Model fetches lazily, as Truss's model_cache pattern does: it takes
    ``lazy_data_resolver`` and its file calls ``block_until_download_complete``. Any other Model
    gets its files before it is built."""
    if not accepts(spec, "lazy_data_resolver"):
        return False
    try:
        return "block_until_download_complete" in spec.file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _init_params(spec: ModelSpec) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(spec.cls).parameters.values())
    except (TypeError, ValueError):
        return []


def data_directory(bundle_dir: Path, config: Config) -> Path:
    """The bundle's data directory, absolute and existing: created empty if absent, as Truss does
    (an empty temporary directory where the bundle is read-only)."""
    path = (bundle_dir / config.data_dir).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        import tempfile

        fallback = Path(tempfile.mkdtemp(prefix="kingpost-data-"))
        logger.warning("%s: data_dir %s cannot be created (%s); the model gets the empty directory %s.",
                       config.path, path, exc.strerror or exc, fallback)
        return fallback
    return path


def apply_environment(config: Config) -> None:
    os.environ.update(config.environment_variables)


def _extend_sys_path(bundle_dir: Path, config: Config) -> None:
    dirs = [bundle_dir / config.bundled_packages_dir, *(bundle_dir / d for d in config.external_package_dirs)]
    for key, d in zip(["bundled_packages_dir", *["external_package_dirs"] * len(config.external_package_dirs)], dirs,
                      strict=True):
        if key == "external_package_dirs" and not d.is_dir():
            raise BundleError(
                f"{config.path}: external_package_dirs: expected an existing directory, found no directory {d}."
            )
        if d.is_dir() and str(d) not in sys.path:
            sys.path.append(str(d))


def _import_module(bundle_dir: Path, config: Config, file: Path) -> ModuleType:
    model_dir = file.parent
    package = _package_of(model_dir)
    module_name = f"{package}.{file.stem}"
    with _IMPORT_LOCK:
        if module_name in sys.modules:
            return sys.modules[module_name]
        pkg_spec = importlib.util.spec_from_file_location(
            package, model_dir / "__init__.py", submodule_search_locations=[str(model_dir)]
        ) if (model_dir / "__init__.py").is_file() else importlib.machinery.ModuleSpec(package, None, is_package=True)
        pkg = importlib.util.module_from_spec(pkg_spec)  # type: ignore[arg-type]
        pkg.__path__ = [str(model_dir)]
        alias = config.model_module_dir.replace("/", ".")
        saved = {k: v for k, v in sys.modules.items() if k == alias or k.startswith(alias + ".")}
        for k in saved:
            del sys.modules[k]
        sys.modules[package] = pkg
        sys.modules[alias] = pkg
        imported = False
        try:
            if pkg_spec is not None and pkg_spec.loader is not None:
                pkg_spec.loader.exec_module(pkg)
            spec = importlib.util.spec_from_file_location(module_name, file)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            sys.modules[f"{alias}.{file.stem}"] = module
            spec.loader.exec_module(module)
            imported = True
            return module
        except ModuleNotFoundError as exc:
            _forget(package, module_name)
            raise _missing(bundle_dir, config, file, exc) from exc
        except SyntaxError as exc:
            _forget(package, module_name)
            where = f"{rel(bundle_dir, Path(exc.filename or file))}, line {exc.lineno}"
            raise ModelLoadError(f"{where}: syntax error: {exc.msg}.") from exc
        except BaseException as exc:
            _forget(package, module_name)
            if not isinstance(exc, Exception):
                raise
            raise ModelLoadError(f"{rel(bundle_dir, file)}: importing it raised {describe(exc, end=True)}") from exc
        finally:
            mine = {k: v for k, v in sys.modules.items() if k == alias or k.startswith(alias + ".")}
            for k in mine:
                del sys.modules[k]
            owner = _ALIAS_OWNERS.get(alias)
            if imported and owner is None and not saved:
                sys.modules.update(mine)  # the first bundle keeps the name, as under Truss
                _ALIAS_OWNERS[alias] = package
            elif imported and owner is not None and owner != package:
                _ALIAS_OWNERS[alias] = _CONTESTED  # a second bundle: the name is nobody's now
            else:
                sys.modules.update(saved)  # a failed import, or a `model` kingpost does not own


def _package_of(model_dir: Path) -> str:
    return "kingpost_bundle_" + hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:12]


def forget(bundle_dir: Path, config: Config) -> None:
    """Drop the cached import of the bundle's model directory, so the next import reads its files
    again (a reload). A runtime already built keeps the module objects it holds."""
    package = _package_of(require_model_file(bundle_dir, config).parent)
    alias = config.model_module_dir.replace("/", ".")
    with _IMPORT_LOCK:
        _forget(package, "")
        if _ALIAS_OWNERS.get(alias) == package:  # the new version may take the `model` name again
            for k in [k for k in sys.modules if k == alias or k.startswith(alias + ".")]:
                del sys.modules[k]
            del _ALIAS_OWNERS[alias]


def _forget(package: str, module_name: str) -> None:
    for k in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
        del sys.modules[k]


def _missing(bundle_dir: Path, config: Config, file: Path, exc: ModuleNotFoundError) -> MissingRequirementError:
    name = (exc.name or "").split(".")[0] or "?"
    try:
        listed = requirement_lines(bundle_dir, config)
    except ConfigError:
        listed = list(config.requirements)
    where = config.requirements_file or "config.yaml requirements"
    required = [r for r in listed if requirement_import_name(r) == name]
    if required:
        hint = (f"the bundle requires {required[0]!r} ({where}), which is not installed here; "
                "install it or run with --isolated")
    else:
        hint = f"no installed package provides it; add it to {where}"
    return MissingRequirementError(f"{rel(bundle_dir, file)}: missing requirement: cannot import {name!r}: {hint}.")


def rel(bundle_dir: Path, file: Path) -> str:
    """``file`` as the user knows it: relative to the directory holding the bundle."""
    try:
        return str(file.relative_to(bundle_dir.parent))
    except ValueError:
        pass
    try:  # a path Python made absolute (SyntaxError.filename) for a bundle given as a relative path
        return str(file.resolve().relative_to(bundle_dir.resolve().parent))
    except ValueError:
        return str(file)
