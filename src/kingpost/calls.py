"""Calling a Model's methods the way Truss does, for bundles that use more than ``hook(model_input)``.

Decided once, at load time, for bundles whose :class:`~kingpost.surface.Surface` is not plain: a
method taking the request, no argument, or both; typed (pydantic) input; OpenAI-style methods.
Their requests travel through the runtime as an :class:`Invocation` (the value, the request, and
the method predict's slot will call), and every method is wrapped once into a callable of one
``Invocation``. Plain bundles never come here.

One predict slot serves ``predict`` and the OpenAI-style methods alike: the predictor calls
``invocation.target(invocation)``, and each target is made to suit the predictor's kind (a sync
target on predict threads, an async one on the loop).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from kingpost.errors import InputError
from kingpost.surface import Args
from kingpost.types import HookKind

Target = Callable[["Invocation"], Any]
Pool = Callable[..., Awaitable[Any]]
"""Runs a blocking call on a worker thread: ``await pool(fn, *args)``."""


class Invocation:
    """One request's trip through an extended bundle."""

    __slots__ = ("request", "target", "value")

    def __init__(self, value: Any, request: Any, target: Target) -> None:
        self.value = value
        self.request = request
        self.target = target


def bind(fn: Callable[..., Any], args: Args) -> Target:
    """``fn`` as a callable of one Invocation, passing what its signature asks for."""
    if args is Args.INPUT:
        return lambda inv: fn(inv.value)
    if args is Args.REQUEST:
        return lambda inv: fn(inv.request)
    if args is Args.INPUT_AND_REQUEST:
        return lambda inv: fn(inv.value, inv.request)
    return lambda inv: fn()


def for_threads(call: Target, kind: HookKind, loop: asyncio.AbstractEventLoop) -> Target:
    """A target a predict thread can call: async methods run on the loop while the thread waits."""
    if kind is HookKind.ASYNC:
        return lambda inv: asyncio.run_coroutine_threadsafe(call(inv), loop).result()
    if kind is HookKind.ASYNC_GENERATOR:
        return lambda inv: _sync_chunks(call(inv), loop)
    return call


def for_loop(call: Target, kind: HookKind, pool: Pool) -> Callable[[Invocation], Awaitable[Any]]:
    """A target the async predictor awaits: sync methods run on a worker thread."""
    if kind is HookKind.ASYNC:
        return call
    if kind is HookKind.ASYNC_GENERATOR:
        async def start_async_generator(inv: Invocation) -> Any:
            return call(inv)
        return start_async_generator
    if kind is HookKind.SYNC_GENERATOR:
        async def start_generator(inv: Invocation) -> Any:
            return async_chunks(call(inv), pool)
        return start_generator

    async def on_thread(inv: Invocation) -> Any:
        return await pool(call, inv)
    return on_thread


def _sync_chunks(generator: Any, loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    try:
        while True:
            try:
                yield asyncio.run_coroutine_threadsafe(generator.__anext__(), loop).result()
            except StopAsyncIteration:
                return
    finally:
        asyncio.run_coroutine_threadsafe(generator.aclose(), loop).result()


_DONE = object()


async def async_chunks(generator: Any, pool: Pool) -> AsyncIterator[Any]:
    """A sync generator read on worker threads, one ``next`` at a time, so it never blocks the loop."""
    try:
        while True:
            chunk = await pool(next, generator, _DONE)
            if chunk is _DONE:
                return
            yield chunk
    finally:
        await pool(generator.close)


def dispatcher(threads: bool) -> Callable[[Invocation], Any]:
    """The one function the predictor calls: whatever target the invocation names."""
    if threads:
        return lambda inv: inv.target(inv)

    async def dispatch(inv: Invocation) -> Any:
        return await inv.target(inv)
    return dispatch


def validator(model: Any) -> Callable[[Any], Any]:
    """Turn the decoded input into an instance of the pydantic ``model``; a mismatch is an InputError."""
    validate = model.model_validate
    error_type = sys.modules["pydantic"].ValidationError

    def parse(value: Any) -> Any:
        if isinstance(value, model):
            return value
        try:
            return validate(value)
        except error_type as exc:
            raise InputError(describe_validation(model, exc)) from exc
    return parse


def describe_validation(model: Any, exc: Any) -> str:
    """``the input does not match Prompt: `max_tokens`: Input should be a valid integer.`` (Truss's locations)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                      for i, p in enumerate(error.get("loc", ()))) or "(the input)"
        parts.append(f"`{loc}`: {str(error.get('msg') or error.get('type')).rstrip('.')}")
    return f"the input does not match {model.__name__}: {'; '.join(parts)}."


def default_request(value: Any) -> Any:
    """The request an in-process call hands a hook that takes one: a POST of ``value`` as JSON."""
    from starlette.requests import Request

    from kingpost.codecs import encode_json

    body = b"" if value is None else encode_json(value)
    scope = {"type": "http", "method": "POST", "path": "/v1/models/model:predict", "raw_path": b"",
             "query_string": b"", "root_path": "", "scheme": "http", "server": None, "client": None,
             "http_version": "1.1", "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode())]}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # in process, the caller never disconnects
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return Request(scope, receive)
