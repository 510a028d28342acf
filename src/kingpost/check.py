"""``kingpost check``: what a bundle holds, found without constructing the Model or running load()."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from kingpost import loader
from kingpost.config import Config, load_config, read_examples
from kingpost.custom_server import DockerServer, docker_server
from kingpost.errors import KingpostError
from kingpost.requirements import requirement_import_name, requirement_lines, requirement_name
from kingpost.surface import Args
from kingpost.unsupported import refuse_unsupported
from kingpost.weights.sources import Source, sources


@dataclass
class Requirement:
    line: str
    installed: str | None  # the installed version, None when missing
    satisfied: bool
    applies: bool = True  # False when its environment marker excludes this platform


@dataclass
class Report:
    bundle_dir: Path
    config: Config
    model_file: Path
    hooks: dict[str, str] = field(default_factory=dict)  # hook -> sync/async/sync generator/...
    requirements: list[Requirement] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    data_files: list[tuple[str, int]] = field(default_factory=list)
    error: KingpostError | None = None  # why model.py could not be inspected
    sources: list[Source] = field(default_factory=list)  # model_cache, weights, external_data
    server: DockerServer | None = None  # docker_server

    @property
    def missing(self) -> list[Requirement]:
        return [r for r in self.requirements if not r.satisfied]


def check(bundle_dir: str | Path) -> Report:
    """Validate the config and examples, import model.py and inspect its Model class.

    A bad config raises ConfigError. A model.py that fails to import is reported in ``error``,
    with everything else still filled in.
    """
    bundle_dir = Path(bundle_dir)
    config = load_config(bundle_dir)
    refuse_unsupported(config)
    report = Report(bundle_dir=bundle_dir, config=config, model_file=loader.model_file(bundle_dir, config))
    report.examples = list(read_examples(bundle_dir / config.examples_filename))
    report.requirements = [_requirement(line) for line in requirement_lines(bundle_dir, config)]
    data = bundle_dir / config.data_dir
    if data.is_dir():
        report.data_files = sorted(
            (str(f.relative_to(data)), f.stat().st_size) for f in data.rglob("*") if f.is_file()
        )
    report.sources = sources(config)  # a bad model_cache / weights / external_data entry raises here
    report.server = docker_server(config)
    if report.server is not None:
        return report  # its own server: no model.py to inspect
    try:
        spec = loader.import_model_class(bundle_dir, config)
    except KingpostError as exc:
        report.error = exc
    else:
        args = {n: a for n, a in spec.surface.args.items() if a is not Args.INPUT and n != "is_healthy"}
        report.hooks = {name: kind.value + (f" {args[name].value}" if name in args else "")
                        for name, kind in spec.kinds.items()}  # how each is called, where not just (input)
    return report


# Distributions that install the same importable package under another name.
_ALSO_PROVIDED_BY = {"xgboost": ("xgboost-cpu",), "onnxruntime": ("onnxruntime-gpu",),
                     "opencv-python": ("opencv-python-headless",)}


def _requirement(line: str) -> Requirement:
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Parsed

    try:
        parsed: Parsed | None = Parsed(line)
    except InvalidRequirement:
        parsed = None  # a URL or VCS line: installed under that name is all we can tell
    if parsed is not None and parsed.marker is not None and not parsed.marker.evaluate():
        return Requirement(line, None, True, applies=False)
    name = requirement_name(line)
    version = None
    for dist in (name, *_ALSO_PROVIDED_BY.get(name, ())):
        try:
            version = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue
    if version is None:
        provider = _provider(line)
        if provider is not None:  # another distribution installs the module (truss -> truss_chains)
            return Requirement(line, f"{provider[1]} (as {provider[0]})", True)
        return Requirement(line, None, False)
    satisfied = parsed is None or parsed.specifier.contains(version, prereleases=True)
    return Requirement(line, version, satisfied)


def _provider(line: str) -> tuple[str, str] | None:
    """(distribution, version) of an installed distribution that provides the requirement's module."""
    module = requirement_import_name(line)
    for dist in metadata.packages_distributions().get(module, ()):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None
