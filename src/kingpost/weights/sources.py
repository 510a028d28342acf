"""What a bundle asks to have fetched: Truss's ``external_data``, ``model_cache`` and ``weights``.

Each entry becomes one :class:`Source`: where to fetch from, which files, and the path the model
expects them at (Truss's ``/app/data/<local_data_path>``, ``/app/model_cache/<volume_folder>`` or a
``weights`` ``mount_location``). ``model_cache`` and ``external_data`` map onto ``weights`` the way
``truss migrate`` maps them. Only config.yaml is read; a bad entry is one ConfigError sentence.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from kingpost.config import Config
from kingpost.errors import ConfigError

MODEL_CACHE = PurePosixPath("/app/model_cache")
APP_DATA = PurePosixPath("/app/data")
SCHEMES = {"hf": "hf", "https": "http", "http": "http", "s3": "s3", "gs": "gs", "azure": "azure"}
_MODEL_CACHE_KINDS = {"hf": "hf", "s3": "s3", "gcs": "gs", "azure": "azure"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Source:
    """One thing to fetch. ``kind`` is hf, http, s3, gs or azure; ``key`` is its dotted config key."""

    key: str
    kind: str
    location: str  # a URL, a Hub repo id, or bucket/prefix
    mount: PurePosixPath  # where Truss puts it, and so where the model looks
    revision: str | None = None
    allow_patterns: tuple[str, ...] | None = None
    ignore_patterns: tuple[str, ...] | None = None
    sha256: str | None = None  # kingpost addition for single files: the digest to insist on
    secret: str | None = None  # the secret holding a token (Truss: hf_access_token)
    data_path: str | None = None  # external_data: the file's path under the bundle's data_dir
    hf_cache: bool = False  # model_cache v1: also laid out as a Hugging Face cache, as Truss does

    @property
    def single_file(self) -> bool:
        return self.kind == "http"

    @property
    def url(self) -> str:
        return self.location if self.kind == "http" else f"{self.kind}://{self.location}"

    @property
    def digest(self) -> str:
        """Names this source in the cache: what is fetched, not where it is mounted."""
        what = [self.kind, self.location, self.revision, self.allow_patterns, self.ignore_patterns, self.sha256]
        return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:24]


def sources(config: Config) -> list[Source]:
    """Every source the bundle declares, validated; an empty list when it declares none."""
    raw = config.raw
    found = [*_external_data(config, raw.get("external_data")), *_model_cache(config, raw.get("model_cache")),
             *_weights(config, raw.get("weights"))]
    seen: dict[PurePosixPath, str] = {}
    for source in found:
        if source.mount in seen:
            raise ConfigError(config.path, f"{source.key}", f"a path no other entry uses (as {seen[source.mount]})",
                              str(source.mount))
        seen[source.mount] = source.key
    return found


def _items(config: Config, value: Any, key: str) -> list[tuple[str, dict[str, Any]]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(config.path, key, "a list of mappings", f"<{type(value).__name__}>")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(config.path, f"{key}[{i}]", "a mapping", item)
        out.append((f"{key}[{i}]", item))
    return out


def _text(config: Config, item: dict[str, Any], key: str, name: str, *, required: bool = False) -> str | None:
    value = item.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(config.path, f"{key}.{name}", "a non-empty string", value if value is not None
                          else "<missing>")
    return value


def _patterns(config: Config, item: dict[str, Any], key: str, name: str) -> tuple[str, ...] | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(config.path, f"{key}.{name}", "a list of glob patterns", value)
    return tuple(value)


def _sha256(config: Config, item: dict[str, Any], key: str) -> str | None:
    value = _text(config, item, key, "sha256")
    if value is not None and not _SHA256.match(value.lower()):
        raise ConfigError(config.path, f"{key}.sha256", "64 hexadecimal digits", value)
    return value.lower() if value else None


def _relative(config: Config, key: str, value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ConfigError(config.path, key, "a relative path inside the data directory", value)
    return str(path)


def _external_data(config: Config, value: Any) -> list[Source]:
    out = []
    for key, item in _items(config, value, "external_data"):
        url = _text(config, item, key, "url", required=True)
        assert url is not None
        if not url.startswith(("https://", "http://")):
            raise ConfigError(config.path, f"{key}.url", "an http(s):// URL", url)
        backend = item.get("backend", "http_public")
        if backend != "http_public":
            raise ConfigError(config.path, f"{key}.backend", "http_public (the only backend Truss has)", backend)
        local = _relative(config, f"{key}.local_data_path", _text(config, item, key, "local_data_path",
                                                                  required=True) or "")
        out.append(Source(key=key, kind="http", location=url, mount=APP_DATA / local, data_path=local,
                          sha256=_sha256(config, item, key)))
    return out


def _model_cache(config: Config, value: Any) -> list[Source]:
    out = []
    items = _items(config, value, "model_cache")
    volumes = {bool(item.get("use_volume", False)) for _, item in items}
    if len(volumes) > 1:
        raise ConfigError(config.path, "model_cache", "every entry with the same use_volume (all v1 or all v2)",
                          "<a mix of use_volume true and false>")
    for key, item in items:
        repo = _text(config, item, key, "repo_id", required=True)
        assert repo is not None
        kind_name = item.get("kind", "hf")
        kind = _MODEL_CACHE_KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise ConfigError(config.path, f"{key}.kind", "one of hf, s3, gcs, azure", kind_name)
        revision = _text(config, item, key, "revision")
        use_volume = item.get("use_volume", False)
        if not isinstance(use_volume, bool):
            raise ConfigError(config.path, f"{key}.use_volume", "true or false", use_volume)
        volume = _text(config, item, key, "volume_folder")
        if use_volume and volume is None:
            raise ConfigError(config.path, f"{key}.volume_folder", "a folder name (use_volume is true)", "<missing>")
        if use_volume and kind == "hf" and not revision:
            raise ConfigError(config.path, f"{key}.revision", "a revision (branch, tag or commit) for a "
                              "use_volume Hugging Face repo", "<missing>")
        location = repo
        for prefix in ("gs://", "s3://", "azure://"):
            location = location.removeprefix(prefix)
        if use_volume:
            assert volume is not None
            mount = MODEL_CACHE / _relative(config, f"{key}.volume_folder", volume)
        elif kind == "hf":  # where `truss migrate` mounts a v1 repo
            mount = MODEL_CACHE / repo.replace("/", "_")
        else:
            mount = MODEL_CACHE / location.split("/")[0]
        out.append(Source(key=key, kind=kind, location=location, mount=mount, revision=revision,
                          allow_patterns=_patterns(config, item, key, "allow_patterns"),
                          ignore_patterns=_patterns(config, item, key, "ignore_patterns"),
                          secret=_text(config, item, key, "runtime_secret_name") or "hf_access_token",
                          hf_cache=kind == "hf" and not use_volume))
    return out


def _weights(config: Config, value: Any) -> list[Source]:
    out = []
    for key, item in _items(config, value, "weights"):
        uri = _text(config, item, key, "source", required=True)
        mount_location = _text(config, item, key, "mount_location", required=True)
        assert uri is not None and mount_location is not None
        scheme, sep, rest = uri.partition("://")
        kind = SCHEMES.get(scheme)
        if not sep or kind is None or not rest or rest.startswith("/"):
            raise ConfigError(config.path, f"{key}.source", "a URI such as hf://owner/repo@revision, "
                              "https://host/file, s3://bucket/path, gs://bucket/path or azure://account/path", uri)
        if not mount_location.startswith("/"):
            raise ConfigError(config.path, f"{key}.mount_location", "an absolute path", mount_location)
        revision = None
        location = uri if kind == "http" else rest
        if kind == "hf" and "@" in rest:
            location, revision = rest.split("@", 1)
        auth = item.get("auth")
        secret = _text(config, item, key, "auth_secret_name") or (
            auth.get("auth_secret_name") if isinstance(auth, dict) else None)
        out.append(Source(key=key, kind=kind, location=location, mount=PurePosixPath(mount_location),
                          revision=revision, allow_patterns=_patterns(config, item, key, "allow_patterns"),
                          ignore_patterns=_patterns(config, item, key, "ignore_patterns"),
                          sha256=_sha256(config, item, key),
                          secret=secret or ("hf_access_token" if kind == "hf" else None)))
    return out

