"""API keys: the door every route passes unless its ``Route`` says ``public=True``.

Keys come from ``--api-key`` (repeatable), ``$KINGPOST_API_KEY``, ``--api-key-file`` (one key a
line, ``#`` comments) and the file ``kingpost_api_keys`` in the secrets directory; any of them is
accepted. A key is sent as ``Authorization: Bearer KEY``, ``Authorization: Api-Key KEY`` (Baseten's
clients) or ``X-API-Key: KEY`` (LitServe's) and compared in constant time against every key.

The app consults :meth:`ApiKeys.allows` in its route dispatch, for every route not marked public,
so a route added later is covered by default; and on its seen-predict-path shortcut, which with
keys is a second set checked only after the keyless one misses. A server without keys pays
nothing on the predict path. Keys never appear in logs, errors or reprs.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from pathlib import Path

from kingpost import defaults
from kingpost.codecs import encode_json
from kingpost.errors import KingpostError
from kingpost.secrets import secrets_dir_from_env
from kingpost.types import Scope, Send

ENV_KEY = "KINGPOST_API_KEY"
SECRET_FILE = defaults.API_KEYS_FILE
"""A file of this name in the secrets directory (``/secrets`` in a container) holds keys too."""

_MISSING = encode_json({"error": "this server needs an API key: send it as 'Authorization: Bearer KEY', "
                                 "'Authorization: Api-Key KEY' or 'X-API-Key: KEY'."})
_WRONG = encode_json({"error": "the API key sent is not valid for this server."})
_CHALLENGE = (b"www-authenticate", b'Bearer realm="kingpost", Api-Key realm="kingpost"')
_SCHEMES = (b"bearer ", b"api-key ")


class ApiKeys:
    """A non-empty set of accepted keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(dict.fromkeys(k.encode() for k in keys if k))
        if not self._keys:
            raise ValueError("ApiKeys needs at least one key")

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._keys)} keys>)"

    def sent(self, scope: Scope) -> bytes | None:
        """The key a request carries, in any of the three forms, or None."""
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                return bytes(value).strip()
            if name == b"authorization":
                lowered = value[:8].lower()
                for scheme in _SCHEMES:
                    if lowered.startswith(scheme):
                        return bytes(value[len(scheme):]).strip()
        return None

    def allows(self, scope: Scope) -> bool:
        key = self.sent(scope)
        if key is None:
            return False
        found = False
        for accepted in self._keys:  # every key is compared, so the time says nothing about which
            found |= hmac.compare_digest(key, accepted)
        return found

    async def deny(self, scope: Scope, send: Send) -> None:
        """Answer 401 (or refuse a websocket handshake with 401 where the server can say so)."""
        body = _WRONG if self.sent(scope) is not None else _MISSING
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), _CHALLENGE]
        if scope["type"] == "websocket":
            if "websocket.http.response" in scope.get("extensions", {}):
                await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": "an API key is required"})
            return
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def load_keys(keys: Iterable[str] = (), key_file: str | Path | None = None,
              secrets_dir: str | Path | None = None) -> ApiKeys | None:
    """The keys from every source, or None when none is configured (the server is then open).

    Raises KingpostError with one sentence when ``key_file`` cannot be read or holds no key.
    """
    found = [k.strip() for k in keys if k.strip()]
    env = os.environ.get(ENV_KEY, "").strip()
    if env:
        found.append(env)
    if key_file is not None:
        path = Path(key_file)
        try:
            from_file = _read_keys(path)
        except OSError as exc:
            raise KingpostError(f"--api-key-file {path}: cannot read it ({exc.strerror or exc}).") from exc
        if not from_file:
            raise KingpostError(f"--api-key-file {path}: expected one API key a line, found none.")
        found += from_file
    secret = secrets_dir_from_env(secrets_dir) / SECRET_FILE
    try:
        found += _read_keys(secret)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        pass
    except OSError as exc:
        raise KingpostError(f"{secret}: cannot read the API keys file ({exc.strerror or exc}).") from exc
    return ApiKeys(found) if found else None


def _read_keys(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
