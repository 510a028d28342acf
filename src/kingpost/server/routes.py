"""The server's route table: a new route is one ``Route(...)`` line in a list.

Paths are literal or hold ``{name}`` parameters (``{name:path}`` matches across ``/``); a parameter
never spans ``/`` or ``:``, so Truss's ``/v1/models/{model}:predict`` reads as written. Literal paths
are looked up in a dict, patterned ones tried in order. A path that matches with the wrong method is
a 405 that lists the methods allowed (``HEAD`` comes with ``GET``).

The ``:predict`` hot path does not come through here: the app recognises predict paths it has
already routed once before it consults this table (see ``App.__call__``), since even a dict lookup
plus a method check costs a measurable share of an echo request.

A table of our own rather than Starlette's ``Router``: the hot path stays hand-written either way,
and what is left needs only this; a server whose routes need no Request/Response never imports
starlette (it is not a core dependency); websocket routes sit in the same table and the same match.
A route family that wants Starlette's ``Request``/``Response`` builds them inside its own endpoints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kingpost.types import Endpoint, Params

_PARAM = re.compile(r"\{(\w+)(:path)?\}")


@dataclass(frozen=True)
class Route:
    """``path`` answered by ``endpoint`` for ``methods``; ``name`` labels it in metrics and logs.

    ``websocket=True`` makes it a websocket route (``methods`` is then ignored). With API keys
    configured, every route asks for one unless it is ``public=True`` (liveness and readiness).
    """

    path: str
    endpoint: Endpoint
    methods: tuple[str, ...] = ("GET",)
    name: str = ""
    websocket: bool = False
    public: bool = False
    pattern: re.Pattern[str] | None = field(init=False, default=None, compare=False)

    def __post_init__(self) -> None:
        if "{" in self.path:
            parts, last = [], 0
            for m in _PARAM.finditer(self.path):
                parts.append(re.escape(self.path[last:m.start()]))
                parts.append(f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/:]+'})")
                last = m.end()
            parts.append(re.escape(self.path[last:]))
            object.__setattr__(self, "pattern", re.compile("".join(parts) + r"\Z"))
        methods = tuple(m.upper() for m in self.methods)
        if "GET" in methods and "HEAD" not in methods:
            methods += ("HEAD",)
        object.__setattr__(self, "methods", methods)
        if not self.name:
            object.__setattr__(self, "name", self.path)


@dataclass(frozen=True)
class Match:
    """What the router found: a route and its parameters, or the methods the path allows."""

    route: Route | None
    params: Params
    allowed: tuple[str, ...] = ()


_NO_PARAMS: Params = {}
NOT_FOUND = Match(None, _NO_PARAMS)


class Router:
    """Match a request's type, path and method against a list of routes (first match wins)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = list(routes)
        self._literal: dict[tuple[bool, str], list[Route]] = {}
        self._patterned: list[Route] = []
        for route in self.routes:
            if route.pattern is None:
                self._literal.setdefault((route.websocket, route.path), []).append(route)
            else:
                self._patterned.append(route)

    def match(self, path: str, method: str, *, websocket: bool = False) -> Match:
        allowed: list[str] = []
        for route in self._literal.get((websocket, path), ()):
            if websocket or method in route.methods:
                return Match(route, _NO_PARAMS)
            allowed += route.methods
        for route in self._patterned:
            if route.websocket is not websocket:
                continue
            assert route.pattern is not None
            found = route.pattern.match(path)
            if found is None:
                continue
            if websocket or method in route.methods:
                return Match(route, found.groupdict())
            allowed += route.methods
        if allowed:
            return Match(None, _NO_PARAMS, tuple(dict.fromkeys(allowed)))
        return NOT_FOUND


def describe(routes: Iterable[Route]) -> list[dict[str, Any]]:
    """The table as data (for ``/openapi.json`` and for tests)."""
    return [{"path": r.path, "methods": list(r.methods), "name": r.name, "websocket": r.websocket,
             "public": r.public} for r in routes]
