"""The one exception tree of kingpost.

    KingpostError
    ├── BundleError ............ the bundle on disk is unusable
    │   └── ConfigError ........ config.yaml (or examples.yaml) holds a bad value
    ├── ModelLoadError ......... the user's model.py could not be imported, built or loaded
    │   └── MissingRequirementError  an import failed for a package the bundle requires
    ├── RequestError ........... one request failed; the runtime keeps serving
    │   ├── InputError ......... the caller sent something the model cannot take (raise it in a hook)
    │   │   ├── PayloadTooLargeError  the request body exceeds runtime.max_request_bytes
    │   │   └── UnsupportedMediaType  the request's Content-Type is neither JSON nor msgpack
    │   ├── NotReadyError ...... the model is loading, failed to load, or is unhealthy
    │   ├── ModelNotFoundError . the server serves no model by the name asked for
    │   ├── QueueFullError ..... too many requests are waiting for predict
    │   ├── DeadlineExceeded ... the request ran past runtime.request_timeout_s
    │   ├── ClientGone ......... the caller went away before its answer; nothing is sent
    │   ├── MethodNotFoundError  the model has no method for this route (an OpenAI-style one, predict)
    │   ├── ModelError ......... a user hook raised; `.stage` names which one
    │   ├── UnreachableError ... (kingpost.Client) the server could not be reached, or the connection broke
    │   └── JobError ........... an async job ended without an output (failed, cancelled, expired, ...)
    ├── FetchError ............. model_cache / weights / external_data could not be fetched or verified
    └── PackagingError ......... an environment, build context, image or deployment could not be made

Foreign and user errors are translated at the boundary with ``raise X(...) from exc``; their
text enters a sentence only through :func:`describe` (and a hook's error through :func:`user_error`).
HTTP status codes for these live in exactly one table: ``kingpost.server.http``.
"""

from __future__ import annotations


class KingpostError(Exception):
    """Base class of every error kingpost raises on purpose."""


class BundleError(KingpostError):
    """The bundle directory is missing a file or cannot be read."""


class ConfigError(BundleError):
    """A configuration value is invalid: the message names file, key, expected and found."""

    def __init__(self, file: object, key: str, expected: str, found: object) -> None:
        self.file = str(file)
        self.key = key
        self.expected = expected
        self.found = found
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: expected {expected}, found {_show(found)}.")


class ModelLoadError(KingpostError):
    """The model could not be imported, constructed or loaded.

    ``__cause__`` keeps the user's exception (and its traceback) for logs.
    """


class MissingRequirementError(ModelLoadError):
    """model.py imports a package that is not installed in this environment."""


class RequestError(KingpostError):
    """One request failed; nothing else is affected.

    Raised by :class:`kingpost.Client`, ``status_code`` is the HTTP status the server answered.
    """

    status_code: int | None = None


class InputError(RequestError):
    """The input is invalid. Raise it from ``preprocess`` to answer the caller with a 400.

    ``status`` is the 4xx a hook's own exception carried (Truss's ``HTTPException(404, ...)``).
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PayloadTooLargeError(InputError):
    """The request body is larger than ``runtime.max_request_bytes``."""


class UnsupportedMediaType(InputError):
    """The request's Content-Type names neither JSON nor msgpack."""


class _RetryLater(RequestError):
    """A 503: refused before it ran; ``retry_after`` is the seconds to wait (the Retry-After header)."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReadyError(_RetryLater):
    """The model is not ready to predict (loading, failed or unhealthy)."""


class ModelNotFoundError(RequestError):
    """A request named a model (``/v1/models/{name}``, ``/v2/models/{name}``) the server does not serve."""


class QueueFullError(_RetryLater):
    """``runtime.max_queue`` requests are already waiting for predict."""


class DeadlineExceeded(RequestError):
    """The request ran past ``runtime.request_timeout_s`` (time spent queued included)."""


class ClientGone(RequestError):
    """The caller went away (before predict started, or while its body was read); the request was dropped."""


class MethodNotFoundError(RequestError):
    """The route needs a method the model does not define (``chat_completions``, ``predict``, ...)."""


class ModelError(RequestError):
    """A user hook raised. ``stage`` is preprocess, predict or postprocess.

    ``status`` is set when the hook's exception carried a 5xx ``status_code`` (Truss's
    ``HTTPException(503, detail)``): that status and message are the answer, as in Truss.
    """

    def __init__(self, stage: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.status = status


class UnreachableError(RequestError):
    """(Client side) no connection to the server could be made, or it broke before the answer came."""


class JobError(RequestError):
    """An async job ended without an output; ``status`` says how (failed, cancelled, expired, interrupted)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class FetchError(KingpostError):
    """A declared source (``model_cache``, ``weights``, ``external_data``) could not be fetched or verified."""


class PackagingError(KingpostError):
    """An isolated environment, build context, image or deployment could not be made."""


def _show(value: object) -> str:
    """Render a found value for an error sentence, short enough for one line."""
    if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
        return value  # already a description such as "<missing>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(exc: BaseException, *, end: bool = False) -> str:
    """An exception as kingpost's sentences name it: ``KeyError: 'api_url'``, the type and the first
    line of its message; ``end=True`` closes the sentence with a full stop unless it has one."""
    text = str(exc).strip()
    described = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
    return described + "." if end and not described.endswith((".", "!", "?")) else described


def user_error(stage: str, exc: BaseException) -> KingpostError:
    """Translate what a user hook raised into the domain error the front doors understand."""
    if isinstance(exc, KingpostError):
        return exc
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:  # e.g. a Truss model raising HTTPException(400)
        err: KingpostError = InputError(str(getattr(exc, "detail", None) or exc), status=status)
    elif isinstance(status, int) and 500 <= status < 600:  # HTTPException(503, detail): kept, as in Truss
        err = ModelError(stage, str(getattr(exc, "detail", None) or exc), status=status)
    else:
        err = ModelError(stage, f"{stage} raised {describe(exc)}")
    err.__cause__ = exc
    return err
