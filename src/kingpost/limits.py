"""The server's guards against hostile and broken traffic: every limit, its default and its key.

All live under ``runtime.limits`` in config.yaml (``runtime.max_request_bytes`` stays where it
was). The defaults are what a production server ships with: nginx, gunicorn and uvicorn guard the
same things with similar figures. ``null`` turns off the limits that say so.

| key | default | what it bounds |
|---|---|---|
| max_header_bytes | 16384 | request line plus headers; more is a 431 |
| max_headers | 100 | header lines; more is a 431 |
| head_timeout_s | 10 | from a request's first byte (or the connection's opening) to its last header; then 408 |
| body_timeout_s | 60 | from the last header to the body's last byte; then 408 |
| idle_timeout_s | 30 | a keep-alive connection with no request in progress is closed after this |
| max_connections | 4096 | open connections; past it the longest-idle one is closed (the new one if none is) |
| write_timeout_s | 60 | a client that reads nothing of a response for this long is disconnected |
| stream_buffer_bytes | 1048576 | bytes of chunks a stream may run ahead of its client; then its generator waits |
| max_decode_elements | 1000000 | values in a decoded JSON or msgpack body; more is a 413 |
| max_decode_depth | 64 | nesting of a decoded body; deeper is a 400 |
| decode_in_thread_bytes | 1048576 | bodies larger than this are decoded off the event loop |
| predict_stuck_s | 600 | predict making no progress this long turns readiness to 503 (and ends a worker of several) |
| allowed_hosts | loopback names when bound to loopback, else any | values of the Host header accepted |
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

from kingpost import defaults

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = defaults.MAX_HEADER_BYTES
    max_headers: int = defaults.MAX_HEADERS
    head_timeout_s: float = defaults.HEAD_TIMEOUT_S
    body_timeout_s: float = defaults.BODY_TIMEOUT_S
    idle_timeout_s: float = defaults.KEEP_ALIVE_S
    max_connections: int = defaults.MAX_CONNECTIONS
    write_timeout_s: float = defaults.WRITE_TIMEOUT_S
    stream_buffer_bytes: int = defaults.STREAM_BUFFER_BYTES
    max_decode_elements: int = defaults.MAX_DECODE_ELEMENTS
    max_decode_depth: int = defaults.MAX_DECODE_DEPTH
    decode_in_thread_bytes: int = defaults.DECODE_IN_THREAD_BYTES
    predict_stuck_s: float | None = defaults.PREDICT_STUCK_S
    allowed_hosts: tuple[str, ...] | None = None


KEYS = frozenset(f.name for f in fields(Limits))
REPLACED = {"stream_buffer_chunks": "stream_buffer_bytes"}
"""Keys read no more, and what replaced them: a config that has one still loads, with a warning."""


def parse_limits(reader: Any) -> Limits:
    """Read ``runtime.limits`` through config's typed reader (``reader`` is a ``config._Reader``)."""
    reader.warn_unknown(KEYS | REPLACED.keys())
    for old, new in REPLACED.items():
        if old in reader.data:
            logger.warning("%s: %s%s is no longer read (the bound is in bytes now): set %s%s instead.",
                           reader.path, reader.prefix, old, reader.prefix, new)
    d = Limits()
    stuck = reader.get("predict_stuck_s")
    hosts = reader.get("allowed_hosts")
    if hosts is not None and (not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts)):
        raise reader.fail("allowed_hosts", "a list of host names (\"*\" allows any)")
    return Limits(
        max_header_bytes=reader.integer("max_header_bytes", d.max_header_bytes, minimum=256),
        max_headers=reader.integer("max_headers", d.max_headers, minimum=1),
        head_timeout_s=reader.number("head_timeout_s", d.head_timeout_s, minimum=0.1),
        body_timeout_s=reader.number("body_timeout_s", d.body_timeout_s, minimum=0.1),
        idle_timeout_s=reader.number("idle_timeout_s", d.idle_timeout_s, minimum=0.1),
        max_connections=reader.integer("max_connections", d.max_connections, minimum=1),
        write_timeout_s=reader.number("write_timeout_s", d.write_timeout_s, minimum=0.1),
        stream_buffer_bytes=reader.integer("stream_buffer_bytes", d.stream_buffer_bytes, minimum=1),
        max_decode_elements=reader.integer("max_decode_elements", d.max_decode_elements, minimum=1),
        max_decode_depth=reader.integer("max_decode_depth", d.max_decode_depth, minimum=1),
        decode_in_thread_bytes=reader.integer("decode_in_thread_bytes", d.decode_in_thread_bytes, minimum=0),
        predict_stuck_s=(d.predict_stuck_s if "predict_stuck_s" not in reader.data
                         else None if stuck is None else reader.opt_number("predict_stuck_s")),
        allowed_hosts=None if hosts is None else tuple(h.lower() for h in hosts),
    )
