"""Several bundles in one server: each under its model name, each with a runtime of its own.

``kingpost serve a/ b/ repo/`` finds its bundles here: a directory holding ``config.yaml`` is a
bundle, a directory without one is a repository whose subdirectories with a ``config.yaml`` are
bundles (a repository is looked at again when its index is asked for or a model is loaded, so a
bundle copied in later can be loaded by name). Each bundle gets its own :class:`Runtime`: its own
predict lock, batching, queue and readiness, so a slow model never holds another's requests.

Unloading a model takes it out of routing at once, lets its in-flight requests finish, stops its
runtime and drops every reference to its Model, so its memory goes back to the allocator.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kingpost.config import CONFIG_FILENAME, load_config
from kingpost.errors import BundleError, InputError, ModelLoadError, ModelNotFoundError, NotReadyError
from kingpost.runtime import Runtime
from kingpost.server import heap
from kingpost.types import State

logger = logging.getLogger("kingpost.server")

DRAIN_S = 30.0  # how long an unload waits for the model's in-flight requests


@dataclass(frozen=True)
class Found:
    """The bundles named on the command line: ``{model name: directory}``, and the repositories."""

    bundles: dict[str, Path]
    repositories: tuple[Path, ...]

    @property
    def single(self) -> bool:
        """One bundle given directly: today's one-model server, ``/v1/models/model`` included."""
        return not self.repositories and len(self.bundles) == 1


def find_bundles(paths: Iterable[str | Path]) -> Found:
    """Sort the given directories into bundles and repositories; a bad one is one sentence."""
    bundles: dict[str, Path] = {}
    repositories: list[Path] = []
    for given in paths:
        path = Path(given)
        if (path / CONFIG_FILENAME).is_file():
            _add(bundles, path)
        elif path.is_dir():
            inner = _repository(path)
            if not inner:
                raise BundleError(f"{path}: expected a bundle directory (with {CONFIG_FILENAME}) or a repository of "
                                  f"bundle directories, found neither.")
            repositories.append(path)
            for bundle in inner:
                _add(bundles, bundle)
        else:
            raise BundleError(f"{path}: expected a bundle directory, found {'a file' if path.exists() else 'nothing'}.")
    return Found(bundles, tuple(repositories))


def _repository(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and (p / CONFIG_FILENAME).is_file())


def model_name(path: Path) -> str:
    return load_config(path).model_name or path.resolve().name


def _add(bundles: dict[str, Path], path: Path) -> None:
    name = model_name(path)
    if name in bundles and bundles[name].resolve() != path.resolve():
        raise BundleError(f"{path}: model name {name!r} is already taken by {bundles[name]}; give one of them "
                          "another model_name.")
    bundles[name] = path


class Models:
    """The runtimes of a multi-model server, by name; loads and unloads them while serving."""

    def __init__(self, found: Found, *, secrets_dir: Path | None = None, workers: int = 1) -> None:
        self.paths = dict(found.bundles)
        self.repositories = found.repositories
        self.secrets_dir = secrets_dir
        self.workers = workers
        self.runtimes: dict[str, Runtime] = {name: self._runtime(p) for name, p in self.paths.items()}
        self.on_unload: list[Callable[[Runtime], None]] = []
        self._changing: dict[str, asyncio.Lock] = {}

    def _runtime(self, path: Path) -> Runtime:
        return Runtime(path, load_config(path), secrets_dir=self.secrets_dir)

    def get(self, name: str) -> Runtime:
        """The runtime serving ``name``; an unknown name is a 404, an unloaded model a 503."""
        runtime = self.runtimes.get(name)
        if runtime is not None:
            return runtime
        if name in self.paths:
            raise NotReadyError(f"model {name!r} is unloaded; load it with POST /v2/repository/models/{name}/load.")
        raise ModelNotFoundError(f"this server serves no model {name!r}; it serves {', '.join(self.paths)}.")

    @property
    def ready(self) -> bool:
        return all(r.state is State.READY for r in self.runtimes.values())

    async def start_all(self) -> None:
        """Load every bundle at once; the first failure is raised once all have finished."""
        results = await asyncio.gather(*(r.start() for r in self.runtimes.values()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def stop_all(self) -> None:
        for runtime in self.runtimes.values():
            await runtime.stop()

    def index(self) -> list[dict[str, str]]:
        """The repository index: every known model, its state and why it is not ready."""
        self.rescan()
        out = []
        for name in self.paths:
            runtime = self.runtimes.get(name)
            if runtime is None:
                state, reason = "UNAVAILABLE", "unloaded"
            elif runtime.state is State.READY:
                state, reason = "READY", ""
            elif runtime.state is State.FAILED:
                state, reason = "UNAVAILABLE", runtime.failure or "failed to load"
            else:
                state, reason = "LOADING", ""
            out.append({"name": name, "version": "1", "state": state, "reason": reason})
        return out

    def metrics(self) -> bytes:
        """Prometheus lines for each loaded model, labelled ``model="<name>"``."""
        series = (
            ("kingpost_model_ready", "gauge", "1 when the model is loaded and ready.",
             lambda r: int(r.state is State.READY)),
            ("kingpost_model_in_flight", "gauge", "Requests inside the model's runtime.", lambda r: r.stats.in_flight),
            ("kingpost_model_queue_depth", "gauge", "Requests waiting for the model's predict slot.",
             lambda r: r.waiting),
            ("kingpost_model_predicting", "gauge", "Items inside the model's predict now.",
             lambda r: r.stats.predicting),
            ("kingpost_model_predictions_total", "counter", "Items the model's predict finished.",
             lambda r: r.stats.stages["predict"].count),
            ("kingpost_model_rejected_total", "counter", "Requests refused because the model's queue was full.",
             lambda r: r.stats.rejected),
            ("kingpost_model_timeouts_total", "counter", "Requests past the model's request_timeout_s.",
             lambda r: r.stats.timed_out),
        )
        lines: list[str] = []
        for name, kind, help_, value in series:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            lines += [f'{name}{{model="{model}"}} {value(runtime)}' for model, runtime in self.runtimes.items()]
        return ("\n".join(lines) + "\n").encode()

    def rescan(self) -> None:
        for repository in self.repositories:
            for path in _repository(repository):
                try:
                    name = model_name(path)
                except BundleError as exc:
                    logger.warning("repository %s: %s", repository, exc)
                    continue
                self.paths.setdefault(name, path)

    async def load(self, name: str) -> None:
        """Load ``name`` (again); a model already loaded and ready is left as it is."""
        if name not in self.paths:
            self.rescan()
        if name not in self.paths:
            raise ModelNotFoundError(f"no bundle named {name!r} is known to this server; it knows "
                                     f"{', '.join(self.paths) or 'none'}.")
        self._one_worker("load")
        async with self._changing.setdefault(name, asyncio.Lock()):
            current = self.runtimes.get(name)
            if current is not None and current.state is State.READY:
                return
            if current is not None:  # failed before: forget it and try afresh
                del current
                await self._drop(name)
            runtime = self._runtime(self.paths[name])
            self.runtimes[name] = runtime
            try:
                await runtime.start()
            except ModelLoadError:
                del runtime
                await self._drop(name)
                raise
            heap.settle()

    async def unload(self, name: str) -> None:
        """Take ``name`` out of service, let its requests finish, and free its model."""
        if name not in self.paths:
            self.get(name)  # the 404
        self._one_worker("unload")
        async with self._changing.setdefault(name, asyncio.Lock()):
            if name in self.runtimes:
                await self._drop(name)

    async def _drop(self, name: str) -> None:
        """Unroute ``name``'s runtime, let its requests finish, stop it and free its model: the only
        reference left to it is this frame's (a caller holding one would keep it alive past the
        collection below, and, frozen again after it, for good)."""
        runtime = self.runtimes.pop(name)
        for forget in self.on_unload:
            forget(runtime)
        if runtime.state is State.READY:  # a request that found it just before it left routing is refused
            runtime.state, runtime.failure = State.FAILED, f"model {name!r} was unloaded"
        deadline = time.monotonic() + DRAIN_S
        while runtime.stats.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await runtime.stop()
        await runtime.stopped()
        del runtime
        heap.thaw()  # its objects were frozen with the rest after it loaded
        gc.collect()
        heap.settle()

    def _one_worker(self, what: str) -> None:
        if self.workers > 1:
            raise InputError(f"cannot {what} models at run time with {self.workers} workers (each worker holds its "
                              "own models); serve with one worker to use the repository extension.")
