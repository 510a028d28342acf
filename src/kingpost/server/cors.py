"""CORS, off by default: a layer around the app, installed only when some origin is allowed.

A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is answered
here, before the API-key check and without touching the model; a refused one is a 400 sentence. Any
other request passes through, and its answer gains ``Access-Control-Allow-Origin`` (and the rest)
when its ``Origin`` is allowed. Settings come from ``runtime.cors`` in config.yaml, overridden per
field by the ``--cors-*`` flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kingpost import defaults
from kingpost.codecs import encode_json
from kingpost.errors import ConfigError
from kingpost.server.http import header_values
from kingpost.types import Message, Receive, Scope, Send

ASGIApp = Any

DEFAULT_METHODS = ("GET", "POST", "OPTIONS")
DEFAULT_HEADERS = ("authorization", "content-type", "x-api-key", "x-request-id", "traceparent", "tracestate")
DEFAULT_MAX_AGE = defaults.CORS_MAX_AGE_S
_EXPOSE = b"x-request-id, retry-after"
_KEYS = {"allow_origins", "allow_methods", "allow_headers", "allow_credentials", "max_age"}


@dataclass(frozen=True)
class CorsPolicy:
    """Which browsers' pages may call the server. ``allow_origins`` may hold ``"*"`` (any origin)."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = DEFAULT_METHODS
    allow_headers: tuple[str, ...] = DEFAULT_HEADERS
    allow_credentials: bool = False
    max_age: int = DEFAULT_MAX_AGE

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)

    def merged(self, **flags: Any) -> CorsPolicy:
        """This policy with the flags that were given (not None, not empty) taking precedence."""
        given: dict[str, Any] = {k: (tuple(v) if isinstance(v, list | tuple) else v) for k, v in flags.items()
                 if v is not None and v != () and v != []}
        return replace(self, **given)


def policy_from_config(path: Path, raw: Any) -> CorsPolicy:
    """``runtime.cors`` of config.yaml, validated; a bad value is one ConfigError sentence."""
    if not raw:
        return CorsPolicy()
    if not isinstance(raw, dict):
        raise ConfigError(path, "runtime.cors", "a mapping of CORS settings", raw)
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(path, f"runtime.cors.{unknown[0]}", "one of " + ", ".join(sorted(_KEYS)), unknown[0])
    out: dict[str, Any] = {}
    for key in ("allow_origins", "allow_methods", "allow_headers"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(path, f"runtime.cors.{key}", "a list of strings", value)
        out[key] = tuple(value)
    if "allow_credentials" in raw:
        if not isinstance(raw["allow_credentials"], bool):
            raise ConfigError(path, "runtime.cors.allow_credentials", "true or false", raw["allow_credentials"])
        out["allow_credentials"] = raw["allow_credentials"]
    if "max_age" in raw:
        age = raw["max_age"]
        if isinstance(age, bool) or not isinstance(age, int) or age < 0:
            raise ConfigError(path, "runtime.cors.max_age", "a whole number of seconds >= 0", age)
        out["max_age"] = age
    return CorsPolicy(**out)


class Cors:
    """The CORS layer around an ASGI app."""

    def __init__(self, app: ASGIApp, policy: CorsPolicy) -> None:
        self.app = app
        self.policy = policy
        self._any = "*" in policy.allow_origins
        self._origins = frozenset(o.encode() for o in policy.allow_origins)
        methods = tuple(dict.fromkeys(m.upper() for m in policy.allow_methods))
        self._methods = frozenset(m.encode() for m in methods)
        self._any_header = "*" in policy.allow_headers
        self._headers = frozenset(h.lower().encode() for h in policy.allow_headers)
        self._preflight_headers = [
            (b"access-control-allow-methods", ", ".join(methods).encode()),
            (b"access-control-max-age", str(policy.max_age).encode()),
        ]
        self._credentials = [(b"access-control-allow-credentials", b"true")] if policy.allow_credentials else []
        # "*" is only sent back literally when no credentials are involved; otherwise the origin is echoed.
        self._literal_star = self._any and not policy.allow_credentials

    def _allowed(self, origin: bytes) -> bool:
        return self._any or origin in self._origins

    def _origin_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        if self._literal_star:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"), *self._credentials]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin, request_method, request_headers = header_values(
            scope, b"origin", b"access-control-request-method", b"access-control-request-headers")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and request_method is not None:
            await self._preflight(send, origin, request_method, request_headers)
            return
        if not self._allowed(origin):
            await self.app(scope, receive, send)
            return
        extra = [*self._origin_headers(origin), (b"access-control-expose-headers", _EXPOSE)]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, origin: bytes, method: bytes, headers: bytes | None) -> None:
        problem = None
        if not self._allowed(origin):
            problem = f"origin {origin.decode('latin-1')} is not allowed"
        elif method.strip().upper() not in self._methods:
            problem = f"method {method.decode('latin-1')} is not allowed"
        elif headers and not self._any_header:
            asked = [h.strip().lower() for h in headers.split(b",") if h.strip()]
            refused = [h.decode("latin-1") for h in asked if h not in self._headers]
            if refused:
                problem = f"header(s) {', '.join(refused)} not allowed"
        if problem is not None:
            body = encode_json({"error": f"CORS preflight refused: {problem}."})
            out = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"vary", b"Origin")]
            await send({"type": "http.response.start", "status": 400, "headers": out})
            await send({"type": "http.response.body", "body": body})
            return
        allow_headers = headers if (self._any_header and headers) else ", ".join(self.policy.allow_headers).encode()
        out = [*self._origin_headers(origin), *self._preflight_headers,
               (b"access-control-allow-headers", allow_headers), (b"content-length", b"0")]
        if self._literal_star:
            out.append((b"vary", b"Origin"))
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})
