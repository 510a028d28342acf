"""Clients for a kingpost server (or a Truss server, or a Ray deployment of either), on httpx.

    with kingpost.Client("http://127.0.0.1:8080") as client:
        client.wait_ready(60)
        client.predict({"x": 1})                          # JSON in and out
        client.predict({"x": np.ones(3)}, msgpack=True)   # msgpack: numpy arrays stay arrays
        for chunk in client.predict_stream({"prompt": "the"}):
            print(chunk, end="")

``AsyncClient`` has the same methods, to be awaited (``predict_stream`` is an async iterator).
``Client`` also submits durable async jobs (``submit``, ``job``; see ``kingpost serve --jobs-dir``).

Errors are kingpost's own classes with the server's sentence: 400 :class:`InputError`, 413
:class:`PayloadTooLargeError`, 500 :class:`ModelError` (``.stage`` read from the sentence), 503
:class:`NotReadyError` or :class:`QueueFullError`, 504 :class:`DeadlineExceeded`, anything else a
:class:`RequestError`; each carries ``status_code``. A server that cannot be reached is an
:class:`UnreachableError`.

Retries, with exponential backoff (``backoff * 2**n``, capped at ``max_backoff``, with jitter):
a connection that could not be made (the request never left) and a 503 (the server refused it
before running it; its Retry-After is honoured) are retried up to ``retries`` times. A request
that may have run (the connection broke after it was sent, no answer within the timeout, a 502 or
504 from a proxy) is retried only with ``retry_unsafe=True``: predict is not assumed idempotent.
"""

from __future__ import annotations

import asyncio
import codecs as _text
import email.utils
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from kingpost import codecs, defaults
from kingpost.errors import (
    DeadlineExceeded,
    InputError,
    KingpostError,
    ModelError,
    ModelLoadError,
    NotReadyError,
    PayloadTooLargeError,
    QueueFullError,
    RequestError,
    UnreachableError,
)

if TYPE_CHECKING:
    from kingpost.jobs.handle import JobHandle

__all__ = ["AsyncClient", "Client", "Stream"]

_MSGPACK = "application/msgpack"
_STAGE = re.compile(r"the model's (\w+)")
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left
_UNSAFE_STATUS = frozenset({502, 504})
_Timeout = float | EllipsisType | None  # ... (the default) means the client's own timeout
_C = TypeVar("_C", bound="_Closing")


class _Retry(Exception):
    """Internal: this attempt failed in a way that may be retried after ``delay`` seconds."""

    def __init__(self, error: KingpostError, delay: float | None = None) -> None:
        self.error = error
        self.delay = delay


class _Closing:
    """``with x:`` closes ``x`` at the end (the blocking client, a stream)."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class _Base:
    def __init__(self, url: str, *, api_key: str | None = None, model: str = "model",
                 timeout: float | None = defaults.CLIENT_TIMEOUT_S, retries: int = defaults.CLIENT_RETRIES,
                 backoff: float = defaults.CLIENT_BACKOFF_S, max_backoff: float = defaults.CLIENT_MAX_BACKOFF_S,
                 retry_unsafe: bool = False, msgpack: bool = False, headers: Mapping[str, str] | None = None) -> None:
        url = url.rstrip("/")
        if "://" not in url:
            url = "http://" + url
        if ":predict" in url.rsplit("/", 1)[-1]:  # a full predict URL: keep its path, find the base
            base, _, last = url.rpartition("/")
            self.url, self.model = base.removesuffix("/v1/models"), last.split(":", 1)[0]
            self._predict_path = url[len(self.url):]
        else:
            self.url, self.model = url, model
            self._predict_path = f"/v1/models/{model}:predict"
        self._readiness_path = f"/v1/models/{self.model}"
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_unsafe = retry_unsafe
        self.msgpack = msgpack
        self._headers = {"user-agent": "kingpost-client", **(headers or {})}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._http = self._connect()

    def _connect(self) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- shared by both clients ----------------------------------------------------------------

    def _body(self, model_input: Any, msgpack: bool | None) -> tuple[bytes, dict[str, str], bool]:
        binary = self.msgpack if msgpack is None else msgpack
        if binary:
            return codecs.encode_msgpack(model_input), {"content-type": _MSGPACK, "accept": _MSGPACK}, True
        return codecs.encode_json(model_input), {"content-type": codecs.JSON}, False

    def _timeout(self, timeout: _Timeout) -> httpx.Timeout:
        seconds = self.timeout if timeout is ... else timeout
        return httpx.Timeout(seconds, connect=min(seconds, 10.0) if seconds is not None else 10.0)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        wait: float = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)  # noqa: S311
        if retry_after is not None:
            wait = max(wait, min(retry_after, defaults.CLIENT_MAX_RETRY_AFTER_S))  # honour the server, within reason
        return wait

    def _transport_error(self, exc: httpx.HTTPError, path: str, unsafe: bool) -> Exception:
        """The error a failed exchange stands for, wrapped in ``_Retry`` when it may be retried."""
        where = self.url + path
        if isinstance(exc, _NOT_SENT):
            error: KingpostError = UnreachableError(f"cannot connect to {where}: {_reason(exc)}.")
        elif isinstance(exc, httpx.TimeoutException):
            error = DeadlineExceeded(f"no answer from {where} within the timeout ({_reason(exc)}).")
        elif isinstance(exc, httpx.TransportError):
            error = UnreachableError(f"the connection to {where} broke after the request was sent "
                                     f"({_reason(exc)}); it may have run, so it was not retried.")
        else:
            error = RequestError(f"{where}: {_reason(exc)}.")
        error.__cause__ = exc
        return _Retry(error) if unsafe or isinstance(exc, _NOT_SENT) else error

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str], timeout: _Timeout,
                 retry_unsafe: bool | None) -> tuple[httpx.Request, bool]:
        """The request to send, and whether it may be retried after it may have run."""
        unsafe = self.retry_unsafe if retry_unsafe is None else retry_unsafe
        request = self._http.build_request(method, path, content=body, headers=headers,
                                           timeout=self._timeout(timeout))
        return request, unsafe

    def _pause(self, retry: _Retry, attempt: int) -> float:
        """The seconds to wait before retrying after failed ``attempt`` (counted from 0); the
        error itself once the retries are spent."""
        if attempt >= self.retries:
            raise retry.error from retry.error.__cause__
        return self._delay(attempt, retry.delay)

    def _check(self, response: httpx.Response, unsafe: bool) -> None:
        """Raise the error a non-2xx answer stands for (``_Retry`` when it may be retried)."""
        status = response.status_code
        if status < 400:
            return
        error = _error_of(response)
        if status == 503 or (unsafe and status in _UNSAFE_STATUS):
            raise _Retry(error, _retry_after(response.headers.get("retry-after")))
        raise error

    def _decode(self, response: httpx.Response, binary: bool) -> Any:
        content_type = response.headers.get("content-type", "")
        media = content_type.partition(";")[0].strip().lower()
        if media == codecs.JSON:
            return codecs.decode_json(response.content)
        # application/octet-stream is msgpack when asked for and sized (Truss answers msgpack so);
        # sent chunked, it is a streaming model's output.
        if codecs.wants_msgpack(media) and (media != "application/octet-stream"
                                            or (binary and "content-length" in response.headers)):
            return codecs.decode_msgpack(response.content)
        return response.text  # a streaming model called without streaming: its chunks, gathered

    def _prepare(self, model_input: Any, msgpack: bool | None, headers: Mapping[str, str] | None,
                 sse: bool = False) -> tuple[bytes, dict[str, str], bool]:
        body, extra, binary = self._body(model_input, msgpack)
        if sse:
            extra["accept"] = "text/event-stream"
        return body, {**extra, **(headers or {})}, binary


class Client(_Closing, _Base):
    """A blocking client for one model server.

    ``url`` is the server's base URL (``http://host:port``, or a Ray Serve route prefix), or a full
    predict URL. ``api_key`` is sent as ``Authorization: Bearer``. ``timeout`` (seconds, per
    call, overridable per call; None waits forever) bounds each attempt. ``retries``,
    ``backoff``, ``max_backoff`` and ``retry_unsafe`` set the retry policy described in the
    module docstring. ``msgpack=True`` makes msgpack the default body format.
    """

    _http: httpx.Client

    def _connect(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self._headers, timeout=self._timeout(...))

    def close(self) -> None:
        self._http.close()

    def predict(self, model_input: Any, *, msgpack: bool | None = None, timeout: _Timeout = ...,
                retry_unsafe: bool | None = None, headers: Mapping[str, str] | None = None) -> Any:
        """Send one input, return the postprocessed output (JSON, or msgpack with numpy arrays)."""
        body, extra, binary = self._prepare(model_input, msgpack, headers)
        response = self._send("POST", self._predict_path, body, extra, timeout, retry_unsafe, stream=False)
        return self._decode(response, binary)

    def predict_stream(self, model_input: Any, *, sse: bool = False, msgpack: bool | None = None,
                       timeout: _Timeout = ..., retry_unsafe: bool | None = None,
                       headers: Mapping[str, str] | None = None) -> Stream:
        """The chunks (``str``) of a streaming model as they arrive: chunked, or Server-Sent Events
        with ``sse=True``. A model that does not stream yields its whole output once
        (``stream.streamed`` is then False). Iterate it; ``close()`` (or ``with``) abandons the rest."""
        body, extra, binary = self._prepare(model_input, msgpack, headers, sse)
        response = self._send("POST", self._predict_path, body, extra, timeout, retry_unsafe, stream=True)
        return Stream(response, lambda: self._decode(response, binary))

    def ready(self, *, timeout: _Timeout = ...) -> bool:
        """Whether the model is loaded and healthy now (no retries)."""
        return _is_ready(self._probe(timeout))

    def wait_ready(self, timeout: float = defaults.CLIENT_WAIT_READY_S) -> None:
        """Wait until the model is ready; :class:`ModelLoadError` at once if loading failed,
        :class:`NotReadyError` after ``timeout`` seconds."""
        wait = _ReadyWait(self.url, timeout)
        while (pause := wait.after(self._probe(min(10.0, timeout)))) is not None:
            time.sleep(pause)

    def _probe(self, timeout: _Timeout) -> httpx.Response | httpx.HTTPError:
        try:
            return self._http.get(self._readiness_path, timeout=self._timeout(timeout))
        except httpx.HTTPError as exc:
            return exc

    # -- async jobs (a server started with --jobs-dir or --jobs-database) --------------------------

    def submit(self, model_input: Any, *, priority: int | None = None, max_time_in_queue_seconds: int | None = None,
               retry: Mapping[str, int] | None = None, webhook_endpoint: str | None = None,
               idempotency_key: str | None = None, timeout: _Timeout = ...) -> JobHandle:
        """Submit ``model_input`` as a durable async job; returns its :class:`JobHandle` at once
        (``.status()``, ``.result(timeout)``, ``.cancel()``, as ``Bundle.submit`` gives). ``retry``
        is the server's ``inference_retry_config``. An ``Idempotency-Key`` goes with every submit (a
        fresh one unless given), so a submit whose answer was lost is retried without a second job."""
        from kingpost.jobs.handle import JobHandle

        fields = {"priority": priority, "max_time_in_queue_seconds": max_time_in_queue_seconds,
                  "inference_retry_config": dict(retry) if retry is not None else None,
                  "webhook_endpoint": webhook_endpoint}
        body = codecs.encode_json({"model_input": model_input, **{k: v for k, v in fields.items() if v is not None}})
        headers = {"content-type": codecs.JSON, "idempotency-key": idempotency_key or uuid.uuid4().hex}
        response = self._send("POST", f"/v1/models/{self.model}:async_predict", body, headers, timeout, True,
                              stream=False)
        return JobHandle(str(response.json()["request_id"]), self._job_verb)

    def job(self, job_id: str, *, wait: float = 0) -> dict[str, Any]:
        """A job as the server shows it; ``wait`` (at most 60) holds the answer until it has ended."""
        view = self._job_verb("get", job_id, wait)
        if view is None:
            raise RequestError(f"no job {job_id} on {self.url}.")
        return view

    def _job_verb(self, verb: str, job_id: str, wait: float = 0) -> dict[str, Any] | None:
        path = f"/v1/jobs/{job_id}"
        try:
            if verb == "cancel":
                try:
                    response = self._send("DELETE", path, b"", {}, ..., True, stream=False)
                except RequestError as exc:
                    if getattr(exc, "status_code", None) != 409:  # 409: it already ended; show it as it is
                        raise
                    return self._job_verb("get", job_id)
            else:
                query = f"?wait={wait:g}" if wait else ""
                timeout = None if self.timeout is None else self.timeout + wait
                response = self._send("GET", path + query, b"", {}, timeout, True, stream=False)
        except RequestError as exc:
            if getattr(exc, "status_code", None) == 404:
                return None
            raise
        view: dict[str, Any] = response.json()
        return view

    def _send(self, method: str, path: str, body: bytes, headers: dict[str, str], timeout: _Timeout,
              retry_unsafe: bool | None, *, stream: bool) -> httpx.Response:
        request, unsafe = self._request(method, path, body, headers, timeout, retry_unsafe)
        attempt = 0
        while True:
            try:
                return self._attempt(request, path, unsafe, stream)
            except _Retry as retry:
                time.sleep(self._pause(retry, attempt))
                attempt += 1

    def _attempt(self, request: httpx.Request, path: str, unsafe: bool, stream: bool) -> httpx.Response:
        try:
            response = self._http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, path, unsafe) from None
        if response.status_code >= 400:  # an error answer: read it whole, close it, raise what it means
            try:
                response.read()
            finally:
                response.close()
            self._check(response, unsafe)
        return response


class AsyncClient(_Base):
    """The same client for asyncio code: ``await client.predict(x)``, ``async for c in
    client.predict_stream(x)``, ``async with AsyncClient(url) as client``."""

    _http: httpx.AsyncClient

    def _connect(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=self._timeout(...))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def predict(self, model_input: Any, *, msgpack: bool | None = None, timeout: _Timeout = ...,
                      retry_unsafe: bool | None = None, headers: Mapping[str, str] | None = None) -> Any:
        body, extra, binary = self._prepare(model_input, msgpack, headers)
        response = await self._send("POST", self._predict_path, body, extra, timeout, retry_unsafe, stream=False)
        return self._decode(response, binary)

    async def predict_stream(self, model_input: Any, *, sse: bool = False, msgpack: bool | None = None,
                             timeout: _Timeout = ..., retry_unsafe: bool | None = None,
                             headers: Mapping[str, str] | None = None) -> AsyncIterator[Any]:
        body, extra, binary = self._prepare(model_input, msgpack, headers, sse)
        response = await self._send("POST", self._predict_path, body, extra, timeout, retry_unsafe, stream=True)
        try:
            reader = _StreamReader(response.headers.get("content-type", ""))
            if reader.whole:
                await response.aread()
                yield self._decode(response, binary)
                return
            async for data in response.aiter_bytes():
                for chunk in reader.feed(data):
                    yield chunk
            for chunk in reader.end():
                yield chunk
        finally:
            await response.aclose()

    async def ready(self, *, timeout: _Timeout = ...) -> bool:
        return _is_ready(await self._probe(timeout))

    async def wait_ready(self, timeout: float = defaults.CLIENT_WAIT_READY_S) -> None:
        wait = _ReadyWait(self.url, timeout)
        while (pause := wait.after(await self._probe(min(10.0, timeout)))) is not None:
            await asyncio.sleep(pause)

    async def _probe(self, timeout: _Timeout) -> httpx.Response | httpx.HTTPError:
        try:
            return await self._http.get(self._readiness_path, timeout=self._timeout(timeout))
        except httpx.HTTPError as exc:
            return exc

    async def _send(self, method: str, path: str, body: bytes, headers: dict[str, str], timeout: _Timeout,
                    retry_unsafe: bool | None, *, stream: bool) -> httpx.Response:
        request, unsafe = self._request(method, path, body, headers, timeout, retry_unsafe)
        attempt = 0
        while True:
            try:
                return await self._attempt(request, path, unsafe, stream)
            except _Retry as retry:
                await asyncio.sleep(self._pause(retry, attempt))
                attempt += 1

    async def _attempt(self, request: httpx.Request, path: str, unsafe: bool, stream: bool) -> httpx.Response:
        try:
            response = await self._http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, path, unsafe) from None
        if response.status_code >= 400:  # an error answer: read it whole, close it, raise what it means
            try:
                await response.aread()
            finally:
                await response.aclose()
            self._check(response, unsafe)
        return response


class Stream(_Closing, Iterator[Any]):
    """The chunks of one streamed answer (see :meth:`Client.predict_stream`)."""

    def __init__(self, response: httpx.Response, decode: Callable[[], Any]) -> None:
        self.response = response
        self._reader = _StreamReader(response.headers.get("content-type", ""))
        self.streamed = not self._reader.whole
        self._chunks: Generator[Any, None, None] = self._iterate(decode)

    def _iterate(self, decode: Callable[[], Any]) -> Generator[Any, None, None]:
        try:
            if not self.streamed:
                self.response.read()
                yield decode()
                return
            for data in self.response.iter_bytes():
                yield from self._reader.feed(data)
            yield from self._reader.end()
        finally:
            self.response.close()

    def __next__(self) -> Any:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        self.response.close()


class _StreamReader:
    """Turns the bytes of a streamed answer into chunks: text as it arrives, or SSE events."""

    def __init__(self, content_type: str) -> None:
        media = content_type.partition(";")[0].strip().lower()
        self.whole = media == codecs.JSON or (codecs.wants_msgpack(media) and media != "application/octet-stream")
        self.sse = media == "text/event-stream"
        self._text = _text.getincrementaldecoder("utf-8")("replace")
        self._pending = ""
        self._data: list[str] = []
        self._event = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._text.decode(data)
        if not self.sse:
            return [text] if text else []
        self._pending += text
        out: list[str] = []
        *lines, self._pending = re.split(r"\r\n|\r|\n", self._pending)
        for line in lines:
            if not line:  # an empty line ends the event
                if self._data:
                    out.append(self._dispatch())
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                self._data.append(value)
            elif field == "event":
                self._event = value
        return out

    def end(self) -> list[str]:
        tail = self._text.decode(b"", final=True)
        if not self.sse:
            return [tail] if tail else []
        out = self.feed(b"")
        if self._pending:
            out += self.feed(b"\n")
        if self._data:
            out.append(self._dispatch())
        return out

    def _dispatch(self) -> str:
        data, event = "\n".join(self._data), self._event
        self._data, self._event = [], ""
        if event == "error":
            raise ModelError("predict", _sentence_of(data))
        return data


class _ReadyWait:
    """One ``wait_ready``: what each readiness answer means (done, failed, or ask again after a pause)."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.last = "no answer yet"

    def after(self, answer: httpx.Response | httpx.HTTPError) -> float | None:
        """None when ready; else the seconds to wait before asking again. :class:`ModelLoadError`
        when loading failed, :class:`NotReadyError` once the deadline has passed."""
        if isinstance(answer, httpx.HTTPError):
            self.last = _reason(answer)
        else:
            if answer.status_code == 200:
                return None
            self.last = _sentence(answer)
            if answer.status_code == 500:
                raise ModelLoadError(self.last)
        if time.monotonic() >= self.deadline:
            raise NotReadyError(f"{self.url} was not ready within {self.timeout:g} s (last: {self.last}).")
        return min(0.1, max(0.0, self.deadline - time.monotonic()))


def _is_ready(answer: httpx.Response | httpx.HTTPError) -> bool:
    return isinstance(answer, httpx.Response) and answer.status_code == 200


def _sentence_of(text: str) -> str:
    try:
        value = codecs.decode_json(text.encode())
    except KingpostError:
        return text.strip()
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return str(value["error"])
    if isinstance(value, dict) and isinstance(value.get("detail"), str):  # FastAPI-style servers
        return str(value["detail"])
    return text.strip()


def _sentence(response: httpx.Response) -> str:
    text = response.text.strip()
    if not text:
        return f"HTTP {response.status_code} {response.reason_phrase} from {response.request.url}."
    return _sentence_of(text[:2000])


def _error_of(response: httpx.Response) -> RequestError:
    """The kingpost error a non-2xx answer stands for, with the server's sentence."""
    status = response.status_code
    sentence = _sentence(response)
    error: RequestError
    if status == 400 or status == 422:
        error = InputError(sentence)
    elif status == 413:
        error = PayloadTooLargeError(sentence)
    elif status == 503:
        retry = int(_retry_after(response.headers.get("retry-after")) or 1)
        error = (QueueFullError if "max_queue" in sentence else NotReadyError)(sentence, retry_after=retry)
    elif status == 504:
        error = DeadlineExceeded(sentence)
    elif status == 500:
        found = _STAGE.search(sentence)
        error = ModelError(found.group(1) if found else "predict", sentence)
    else:
        error = RequestError(f"HTTP {status}: {sentence}")
    error.status_code = status
    return error


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return text or type(exc).__name__
