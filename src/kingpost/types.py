"""The core shapes of kingpost, named once: what a hook is, how it runs, a runtime's life, a
stream, and the ASGI contract every route family sees."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

Hook = Callable[[Any], Any]
"""A user hook as found on the Model instance (sync or async, plain or generator)."""

Stage = Callable[[Any], Awaitable[Any]]
"""A pre/post hook as the runtime calls it on a request: always awaited on the event loop."""

Secrets = Mapping[str, str | None]
"""What a Model's ``secrets`` kwarg is: name -> value (None when not set anywhere)."""

Echo = Callable[[str], None]
"""Where a long operation (an environment build, a deployment) reports progress: one line a call."""


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
    """The output of a streaming predict (``kingpost.predictor.streams.ChunkStream``): an async
    iterator of chunks that can be closed early, which frees the predict slot."""

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def __anext__(self) -> Any: ...

    async def aclose(self) -> None: ...


# The ASGI contract, as the server and every route family see it.
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
"""Response headers as ASGI sends them: lower-case names and values, as bytes."""
Params = Mapping[str, str]
"""A route's path parameters: ``{model}`` in ``/v1/models/{model}``."""
Endpoint = Callable[[Scope, Receive, Send, Params], Awaitable[None]]
"""A route's endpoint: the ASGI triple plus the path's parameters."""
