"""Resolve a bundle's sources: list them, download what the cache lacks (in parallel), then mount.

Cache first: a source whose manifest and blobs are in the cache is used without touching the
network (so a cached bundle starts offline); ``refresh=True`` lists it again (a branch such as
``main`` may have moved). ``HF_HUB_OFFLINE=1`` or ``KINGPOST_OFFLINE=1`` forbid the network: a
source not cached is then one sentence.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from kingpost import defaults
from kingpost.config import Config
from kingpost.errors import FetchError
from kingpost.secrets import SecretStore
from kingpost.weights import cloud, hub
from kingpost.weights.download import FileRequest, Progress, download
from kingpost.weights.sources import Source, sources
from kingpost.weights.store import Entry, Store, link, locked

logger = logging.getLogger(__name__)

WORKERS = int(os.environ.get("KINGPOST_DOWNLOAD_WORKERS", defaults.DOWNLOAD_WORKERS))


@dataclass(frozen=True)
class Fetched:
    source: Source
    path: Path  # the tree (a directory) or, for a single-file source, the file in it
    entries: tuple[Entry, ...]
    cached: bool  # True: nothing was downloaded


class Fetcher:
    """The sources of one bundle and how to fetch them. Building it validates config.yaml only."""

    def __init__(self, root: Path, config: Config, *, secrets_dir: str | Path | None = None,
                 store: Store | None = None) -> None:
        self.root = Path(root)
        self.config = config
        self.sources = sources(config)
        self.secrets_dir = secrets_dir
        self.store = store or Store()
        self.key = key = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        has_external = any(s.data_path is not None for s in self.sources)
        self.data_dir: Path | None = self.store.root / "views" / key / "data" if has_external else None

    def run(self, *, progress: Progress | None = None, refresh: bool = False, verify: bool = False,
            mount: bool = True) -> list[Fetched]:
        """Fetch every source (raising FetchError), then link each where the model expects it.

        ``refresh`` lists cached sources again; ``verify`` re-hashes cached files and fetches any
        that no longer match.
        """
        if not self.sources:
            return []
        start = time.monotonic()
        try:
            fetched = [self._one(source, progress, refresh, verify) for source in self.sources]
        except FetchError as exc:
            if str(exc).startswith(str(self.config.path)):
                raise
            raise FetchError(f"{self.config.path}: {exc}") from exc
        downloaded = [f for f in fetched if not f.cached]
        if downloaded:
            size = sum(e.size for f in downloaded for e in f.entries)
            logger.warning("fetched %d source(s), %.1f MB, in %.1f s into %s", len(downloaded), size / 1e6,
                           time.monotonic() - start, self.store.root)
        if mount:
            with locked(self.store.lock(f"bundle-{self.key}")):
                self.mount(fetched)
        return fetched

    def _one(self, source: Source, progress: Progress | None, refresh: bool, verify: bool) -> Fetched:
        with locked(self.store.lock(f"source-{source.digest}")):  # another worker may be fetching it now
            return self._one_locked(source, progress, refresh, verify)

    def _one_locked(self, source: Source, progress: Progress | None, refresh: bool, verify: bool) -> Fetched:
        store = self.store
        known = None if refresh else store.read_manifest(source.digest)
        if known is not None and verify:
            bad = [e for e in known[0] if store.has(e) and not store.intact(e)]
            for entry in bad:
                logger.warning("%s: %s in the cache does not match its sha256 any more; fetching it again",
                               source.key, entry.path)
                store.discard(entry)
            if bad:  # its tree holds links to the same damaged files
                shutil.rmtree(store.tree_path(known[0]), ignore_errors=True)
        if known is not None and all(store.has(e) for e in known[0]):
            entries, cached = known[0], True
        else:
            if _offline():
                raise FetchError(f"{self.config.path}: {source.key}: {source.url} is not in the cache "
                                 f"({store.root}) and the network is off (HF_HUB_OFFLINE / KINGPOST_OFFLINE); fetch "
                                 "it first with: kingpost fetch BUNDLE.")
            resolved, requests = self._list(source)
            if not requests:
                kept = " that allow_patterns/ignore_patterns keep" if source.allow_patterns or source.ignore_patterns \
                    else ""
                raise FetchError(f"{self.config.path}: {source.key}: {source.url} has no files{kept}.")
            entries = in_parallel(lambda r: download(r, store, progress), requests, WORKERS)
            store.write_manifest(source.digest, entries, {"revision": resolved} if resolved else {})
            if source.hf_cache:
                _hf_cache_layout(source, resolved, entries, store)
            cached = False
        tree = store.tree(entries)
        path = tree / entries[0].path if source.single_file else tree
        return Fetched(source, path, tuple(entries), cached)

    def _list(self, source: Source) -> tuple[str, list[FileRequest]]:
        if source.kind == "http":
            name = PurePosixPath(source.data_path or source.mount.name).name or "file"
            return "", [FileRequest(key=source.key, url=source.location, label=name, sha256=source.sha256)]
        token = self._secret(source.secret)
        if source.kind == "hf":
            return hub.list_files(source, token)
        return cloud.list_files(source, token)

    def _secret(self, name: str | None) -> str | None:
        if name is None:
            return None
        declared = {name: None, **{k: v for k, v in self.config.secrets.items() if k == name}}
        return SecretStore(declared, self.secrets_dir)[name] or None

    # -- where the model looks ---------------------------------------------------------------------

    def mount(self, fetched: list[Fetched]) -> None:
        for item in fetched:
            _place_link(Path(item.source.mount), item.path, item.source.key)
        if self.data_dir is not None:
            self._data_view(fetched)

    def _data_view(self, fetched: list[Fetched]) -> None:
        """A data_dir holding the bundle's data/ files and its external_data (which wins, as in Truss)."""
        assert self.data_dir is not None
        view = self.data_dir
        view.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".data.", dir=view.parent))
        tmp.chmod(0o755)
        own = self.root / self.config.data_dir
        if own.is_dir():
            for path in sorted(own.rglob("*")):
                if path.is_file():
                    dest = tmp / path.relative_to(own)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(path.resolve(), dest)
        for item in fetched:
            if item.source.data_path is not None:
                dest = tmp / item.source.data_path
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.unlink(missing_ok=True)
                link(item.path, dest)
        old = view.with_name(f".old-{os.getpid()}")
        if view.exists():
            os.replace(view, old)
        os.replace(tmp, view)
        shutil.rmtree(old, ignore_errors=True)


T = TypeVar("T")
R = TypeVar("R")


def in_parallel(fn: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``workers`` daemon threads; the first exception is raised.

    Daemon threads, not a ThreadPoolExecutor: the interpreter joins an executor's threads at exit,
    so a server told to stop (SIGTERM) mid-download would wait for the download to finish. What a
    stopped download received stays in partial/ and is resumed next time.
    """
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    todo = iter(enumerate(items))
    lock = threading.Lock()

    def work() -> None:
        while not errors:
            with lock:
                nxt = next(todo, None)
            if nxt is None:
                return
            index, item = nxt
            try:
                results[index] = fn(item)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller
                errors.append(exc)
                return

    threads = [threading.Thread(target=work, name="kingpost-fetch", daemon=True)
               for _ in range(max(1, min(workers, len(items))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "KINGPOST_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _place_link(mount: Path, target: Path, key: str) -> None:
    """Make ``mount`` a symlink to ``target``; a real file or directory already there is left alone."""
    if mount.is_symlink():
        if os.readlink(mount) == str(target):
            return
    elif mount.exists():
        logger.warning("%s: %s already exists and is not a link kingpost made; it is left as it is (the fetched "
                       "files are in %s).", key, mount, target)
        return
    try:
        mount.parent.mkdir(parents=True, exist_ok=True)
        tmp = mount.with_name(f".{mount.name}.kingpost-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, mount)
    except OSError as exc:
        logger.warning("%s: cannot link %s to the fetched files (%s); a model that opens that path will not "
                       "find them. Make %s writable for this user, or read the files from %s.", key, mount,
                       exc.strerror or exc, mount.parent, target)


def _hf_cache_layout(source: Source, commit: str, entries: list[Entry], store: Store) -> None:
    """model_cache v1 as Truss has it: the repo in the Hugging Face cache, so from_pretrained(repo_id) finds it."""
    try:
        from huggingface_hub import constants
    except ModuleNotFoundError:
        return
    repo = Path(constants.HF_HUB_CACHE) / f"models--{source.location.replace('/', '--')}"
    try:
        for entry in entries:
            blob = repo / "blobs" / entry.sha256
            if not blob.exists():
                blob.parent.mkdir(parents=True, exist_ok=True)
                link(store.blob(entry.sha256), blob)
            snap = repo / "snapshots" / commit / entry.path
            snap.parent.mkdir(parents=True, exist_ok=True)
            if not snap.exists():
                os.symlink(os.path.relpath(blob, snap.parent), snap)
        refs = repo / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / (source.revision or "main")).write_text(commit)
    except OSError as exc:
        logger.warning("%s: could not add %s to the Hugging Face cache %s (%s).", source.key, source.location,
                       constants.HF_HUB_CACHE, exc)


def fetch_bundle(root: Path, config: Config, *, secrets_dir: str | Path | None = None,
                 progress: Progress | None = None, refresh: bool = False, verify: bool = False) -> list[Fetched]:
    """Fetch (and mount) everything the bundle declares; ``kingpost fetch``."""
    return Fetcher(root, config, secrets_dir=secrets_dir).run(progress=progress, refresh=refresh, verify=verify)

