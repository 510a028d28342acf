"""The weights cache on disk: content-addressed, shared by every bundle, written atomically.

    <cache>/blobs/<sha256>              a verified file, read-only, named by its content
    <cache>/partial/<name>.part         a download in progress (kept when cut, resumed with Range)
    <cache>/partial/<name>.json         what the .part holds: its URL and the server's validator
    <cache>/sources/<digest>.json       a fetched source: [{path, sha256, size}] and its resolved revision
    <cache>/trees/<digest>/             a source's files, hard links to blobs (what a mount points at),
                                        named by the files it holds
    <cache>/views/<bundle>/data/        a bundle's data_dir with its external_data, when it has any
    <cache>/locks/                      one fetch of a source, one mount of a bundle at a time

<cache> is ``$KINGPOST_CACHE_DIR/weights``, else ``$XDG_CACHE_HOME/kingpost/weights``, else
``~/.cache/kingpost/weights``. A file reaches ``blobs/`` only by an atomic rename after its digest
was checked, so nothing that looks complete is ever half-written; a source's manifest is written
last, after all its blobs, so a manifest on disk means the source can be used without a network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    if os.environ.get("KINGPOST_CACHE_DIR"):
        return Path(os.environ["KINGPOST_CACHE_DIR"]).expanduser() / "weights"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kingpost" / "weights"


@dataclass(frozen=True)
class Entry:
    """One file of a source: its path inside the source and the blob holding it."""

    path: str
    sha256: str
    size: int


class Store:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()
        self.blobs = self.root / "blobs"
        self.partial = self.root / "partial"

    def lock(self, name: str) -> Path:
        return self.root / "locks" / f"{name}.lock"

    def blob(self, sha256: str) -> Path:
        return self.blobs / sha256

    def has(self, entry: Entry) -> bool:
        try:
            return self.blob(entry.sha256).stat().st_size == entry.size
        except OSError:
            return False

    def part(self, name: str) -> Path:
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial / f"{name}.part"

    def admit(self, part: Path, sha256: str) -> Path:
        """Move a verified download into the blob store (atomically; a twin already there wins)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        target = self.blob(sha256)
        part.chmod(0o444)
        os.replace(part, target)
        with contextlib.suppress(OSError):
            part.with_suffix(".json").unlink()
        return target

    # -- manifests ------------------------------------------------------------------------------

    def manifest_path(self, digest: str) -> Path:
        return self.root / "sources" / f"{digest}.json"

    def read_manifest(self, digest: str) -> tuple[list[Entry], dict[str, Any]] | None:
        try:
            data = json.loads(self.manifest_path(digest).read_text(encoding="utf-8"))
            entries = [Entry(e["path"], e["sha256"], int(e["size"])) for e in data["files"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return entries, data.get("resolved", {})

    def write_manifest(self, digest: str, entries: list[Entry], resolved: dict[str, Any]) -> None:
        data = {"files": [e.__dict__ for e in entries], "resolved": resolved}
        _write_atomic(self.manifest_path(digest), json.dumps(data, indent=1).encode())

    # -- trees ----------------------------------------------------------------------------------

    def intact(self, entry: Entry) -> bool:
        """Whether the blob still hashes to its name (``kingpost fetch --verify``)."""
        digest = hashlib.sha256()
        try:
            with self.blob(entry.sha256).open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return False
        return digest.hexdigest() == entry.sha256

    def discard(self, entry: Entry) -> None:
        self.blob(entry.sha256).unlink(missing_ok=True)

    def tree_path(self, entries: list[Entry]) -> Path:
        digest = hashlib.sha256(json.dumps([e.__dict__ for e in entries], sort_keys=True).encode()).hexdigest()[:24]
        return self.root / "trees" / digest

    def tree(self, entries: list[Entry]) -> Path:
        """The files as a directory of hard links to their blobs (symlinks across devices), named by
        what it holds: a source whose revision moved gets a new tree, never a changed one."""
        target = self.tree_path(entries)
        digest = target.name
        if target.is_dir():  # renamed into place whole, so present means complete
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=target.parent))
        try:
            for entry in entries:
                dest = tmp / entry.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                link(self.blob(entry.sha256), dest)
            tmp.chmod(0o755)
            try:
                os.rename(tmp, target)
            except OSError:  # another process finished the same tree first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (``--workers``, two bundles), released on exit or death."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        os.symlink(source, dest)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
