"""The core shapes of kingpost, named once."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

JSONValue = Any
"""Whatever a hook takes or returns: JSON-like data, numpy arrays, bytes, ..."""

ModelInput = Any
ModelOutput = Any
Chunk = str | bytes

Hook = Callable[[Any], Any]
"""A user hook as found on the Model instance (sync or async, plain or generator)."""

AsyncHook = Callable[[Any], Awaitable[Any]]
"""A hook after the runtime has wrapped it: always awaited on the event loop."""

Secrets = Mapping[str, str | None]

# The ASGI contract, as the server and every route family see it.
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class HookKind(enum.Enum):
    """How a hook runs, decided once at load time."""

    SYNC = "sync"
    ASYNC = "async"
    SYNC_GENERATOR = "sync generator"
    ASYNC_GENERATOR = "async generator"

    @property
    def streams(self) -> bool:
        return self in (HookKind.SYNC_GENERATOR, HookKind.ASYNC_GENERATOR)


class State(enum.Enum):
    """Lifecycle of a runtime: NEW -> LOADING -> READY | FAILED."""

    NEW = "new"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class Stream(Protocol):
    """The output of a streaming predict: an async iterator that can be closed early."""

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def aclose(self) -> None: ...
