"""Request bodies decoded within bounds: values counted, nesting bounded, big ones off the loop.

A body's size alone does not bound its cost: msgpack turns each one-byte element into a Python
object (a 1-byte empty map becomes a 64-byte dict) and JSON does the same at about 1:30. So:

- a body can only hold more values than it has bytes, and no more nesting than values; the
  checks below run only for bodies big enough to break a limit, so a small request pays one
  length comparison (JSON: plus a C-speed bracket count);
- JSON values are counted on the raw bytes before anything is allocated (commas plus brackets: an
  upper bound, since a comma inside a string counts too); msgpack values are counted while they
  are built, and the decode stops at the limit;
- nesting is checked on the decoded value, only when the body holds more containers than the limit;
- bodies above ``decode_in_thread_bytes`` are decoded on a thread: the loop keeps serving others
  wherever the decoder gives the GIL back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kingpost import codecs
from kingpost.concurrency import ElasticPool, reject, resolve
from kingpost.errors import InputError, PayloadTooLargeError
from kingpost.limits import Limits


class _TooMany(PayloadTooLargeError):
    pass


class _Budget:
    """Counts values as msgpack builds containers; stops the decode at the limit."""

    __slots__ = ("containers", "left")

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.containers = 0

    def array(self, value: list[Any]) -> list[Any]:
        self.containers += 1
        self.left -= len(value) + 1
        if self.left < 0:
            raise _TooMany("")
        return value

    def map(self, value: dict[Any, Any]) -> Any:
        self.containers += 1
        self.left -= 2 * len(value) + 1
        if self.left < 0:
            raise _TooMany("")
        return codecs.msgpack_object_hook(value)


class BodyDecoder:
    """Decode request bodies within ``limits``; thresholds are computed once, here."""

    def __init__(self, limits: Limits) -> None:
        self.max_elements = limits.max_decode_elements
        self.max_depth = limits.max_decode_depth
        self.thread_bytes = limits.decode_in_thread_bytes
        self._pool = ElasticPool("kingpost-decode")
        self._loop: asyncio.AbstractEventLoop | None = None

    def decode(self, body: bytes, binary: bool) -> Any:
        """Decode ``body`` here (JSON, or msgpack when ``binary``); raise InputError past a limit."""
        if binary:
            if len(body) <= self.max_depth:  # fewer bytes than the depth limit: no limit can be reached
                return codecs.decode_msgpack(body)
            budget = _Budget(self.max_elements)
            try:
                value = codecs.decode_msgpack(body, object_hook=budget.map, list_hook=budget.array)
            except _TooMany:
                raise self._too_many() from None
            if budget.containers > self.max_depth:
                self._check_depth(value)
            return value
        if len(body) > 2 * self.max_elements:  # a JSON value takes at least ~2 bytes with its comma
            rough = body.count(b",") + body.count(b"[") + body.count(b"{")
            if rough >= self.max_elements:
                raise self._too_many()
            value = codecs.decode_json(body)
            self._check_depth(value)
            return value
        value = codecs.decode_json(body)
        if len(body) > 2 * self.max_depth and body.count(b"[") + body.count(b"{") > self.max_depth:
            self._check_depth(value)
        return value

    def decode_off_loop(self, body: bytes, binary: bool) -> asyncio.Future[Any]:
        """:meth:`decode` on a thread of its own pool; await the returned future."""
        return self.off_loop(self.decode, body, binary)

    def off_loop(self, decode: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``decode(*args)`` (any decode bounded by this decoder) on a thread of its pool."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        future = loop.create_future()

        def run() -> None:
            try:
                value = decode(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
                loop.call_soon_threadsafe(reject, future, exc)
            else:
                loop.call_soon_threadsafe(resolve, future, value)

        self._pool.submit(run)
        return future

    def shutdown(self) -> None:
        self._pool.shutdown()

    def _too_many(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"the request body holds more than {self.max_elements} values; "
                                    f"runtime.limits.max_decode_elements allows {self.max_elements}.")

    def _check_depth(self, value: Any) -> None:
        limit = self.max_depth
        kind = type(value)
        if kind is not list and kind is not dict:
            return
        stack = [(value, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > limit:
                raise InputError(f"the request body nests deeper than {limit} levels; "
                                 f"runtime.limits.max_decode_depth allows {limit}.")
            for item in (node.values() if type(node) is dict else node):
                kind = type(item)
                if kind is list or kind is dict:
                    stack.append((item, depth + 1))


__all__ = ["BodyDecoder"]
