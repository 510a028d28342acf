"""Fetch one file over HTTP(S) into the store: resumed with Range, verified, then moved into place.

A download writes ``partial/<name>.part`` and remembers the server's validator (ETag or
Last-Modified) beside it. A later attempt, in this process or the next, asks for the rest with
``Range`` + ``If-Range``: a server that answers 206 continues the file, one that answers 200 (the
file changed, or it ignores ranges) starts it over. The whole file is then hashed; only a file
whose sha256 (or, for small Hub files, git blob id) matches what was expected, and whose size
matches what was announced, is renamed into ``blobs/<sha256>``. Anything else is deleted and
reported in one sentence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kingpost import defaults
from kingpost.errors import FetchError
from kingpost.weights.store import Entry, Store

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, "int | None"], None]
"""Told (file label, bytes so far, total or None) as a download advances."""

CHUNK = 1 << 20
RETRIES = defaults.DOWNLOAD_RETRIES
TIMEOUT_S = float(os.environ.get("KINGPOST_DOWNLOAD_TIMEOUT", defaults.DOWNLOAD_TIMEOUT_S))


@dataclass(frozen=True)
class FileRequest:
    """One file to fetch; ``key`` is the config key it came from, for error sentences."""

    key: str
    url: str
    label: str
    headers: dict[str, str] = field(default_factory=dict)
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None  # the Hub's etag of a file not in LFS: sha1 of "blob <size>\0" + content


def download(req: FileRequest, store: Store, progress: Progress | None = None) -> Entry:
    """The file's store entry, fetching it unless a verified copy is already there."""
    if req.sha256 is not None and req.size is not None and store.has(Entry(req.label, req.sha256, req.size)):
        return Entry(req.label, req.sha256, req.size)
    name = hashlib.sha256(json.dumps([req.url, req.sha256, req.git_sha1]).encode()).hexdigest()[:32]
    part = store.part(name)
    meta = part.with_suffix(".json")
    for attempt in range(RETRIES + 1):
        try:
            total = _fetch_into(req, part, meta, progress)
            break
        except _Retryable as exc:
            if attempt == RETRIES:
                raise FetchError(f"{req.key}: the download of {req.url} kept failing ({exc}); run again to "
                                 "resume it.") from exc
            logger.warning("%s: %s; resuming (attempt %d of %d)", req.url, exc, attempt + 2, RETRIES + 1)
            time.sleep(min(0.5 * 2 ** attempt, 5))
    return _verify_and_admit(req, part, meta, total, store)


class _Retryable(Exception):
    pass


def _fetch_into(req: FileRequest, part: Path, meta: Path, progress: Progress | None) -> int:
    have = part.stat().st_size if part.exists() else 0
    validator = _validator(meta, req.url) if have else None
    headers = {"User-Agent": "kingpost", "Accept-Encoding": "identity", **req.headers}
    if have and validator:
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = validator
    else:
        have = 0
    try:
        response = urllib.request.urlopen(urllib.request.Request(req.url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:  # nothing left to send: the part is whole
            return have
        if exc.code in (429, 500, 502, 503, 504):
            raise _Retryable(f"it answered {exc.code} {exc.reason}") from exc
        hint = " (a private or gated repository needs a token: the hf_access_token secret or HF_TOKEN)" \
            if exc.code in (401, 403) else ""
        raise FetchError(f"{req.key}: {req.url} answered {exc.code} {exc.reason}{hint}.") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if have == 0 and not isinstance(reason, TimeoutError):
            raise FetchError(f"{req.key}: cannot reach {req.url} ({reason}).") from None
        raise _Retryable(str(reason)) from exc
    with response:
        if response.status == 206 and not _continues(response.headers.get("Content-Range", ""), have):
            raise FetchError(f"{req.key}: {req.url} answered a range that does not continue the partial file.")
        mode = "ab" if response.status == 206 else "wb"
        done = have if mode == "ab" else 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else None
        tag = response.headers.get("ETag") or response.headers.get("Last-Modified")
        meta.write_text(json.dumps({"url": req.url, "validator": tag}), encoding="utf-8")
        label = req.label
        with part.open(mode, buffering=0) as f:  # what arrived is on disk: a kill loses nothing received
            try:
                while chunk := response.read1(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(label, done, total or req.size)
            except (OSError, ValueError) as exc:  # a connection cut mid-body: keep what arrived
                raise _Retryable(f"the connection broke after {done} bytes: {exc}") from exc
    if total is not None and done < total:
        raise _Retryable(f"the connection closed after {done} of {total} bytes")
    return done


def _validator(meta: Path, url: str) -> str | None:
    try:
        data: dict[str, Any] = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("validator")
    return value if data.get("url") == url and isinstance(value, str) and value else None


def _continues(content_range: str, have: int) -> bool:
    unit, _, spec = content_range.partition(" ")
    return unit == "bytes" and spec.split("-", 1)[0].strip() == str(have)


def _verify_and_admit(req: FileRequest, part: Path, meta: Path, total: int, store: Store) -> Entry:
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {total}\0".encode(), usedforsecurity=False) if req.git_sha1 else None
    with part.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            if git is not None:
                git.update(chunk)
    digest = sha256.hexdigest()
    problem = None
    if req.size is not None and total != req.size:
        problem = f"it is {total} bytes, expected {req.size}"
    elif req.sha256 is not None and digest != req.sha256:
        problem = f"its sha256 is {digest}, expected {req.sha256}"
    elif git is not None and git.hexdigest() != req.git_sha1:
        problem = f"its git blob id is {git.hexdigest()}, expected the Hub's {req.git_sha1}"
    if problem is not None:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise FetchError(f"{req.key}: the file downloaded from {req.url} is corrupt ({problem}); it was "
                         "discarded.")
    store.admit(part, digest)
    return Entry(req.label, digest, total)
