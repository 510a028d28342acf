"""Truss's model surface: which methods a Model class offers, and how each one is called.

Found once, at load time, from the class alone (nothing is constructed). The rules are Truss's
(``truss/templates/server/model_wrapper.py``, Truss 0.9-0.18):

* A method takes no argument, the input, the request, or the input then the request. The request
  parameter is recognised by its annotation only (``starlette.requests.Request`` or a subclass,
  such as ``fastapi.Request``); a string annotation is not a request, as in Truss.
* Refused: a request first of two, a second parameter that is not a request, more than two
  parameters; ``websocket`` next to ``predict``/``preprocess``/``postprocess``; a class with neither
  ``predict`` nor ``websocket``; ``predict(self, request)`` after a ``preprocess`` (its output would
  be dropped); ``postprocess(self, request)``; ``is_healthy`` with an argument; a ``websocket`` that
  is not ``async def`` or takes other than one argument.
* The input schema is the pydantic model annotating the first parameter of ``preprocess`` (else
  ``predict``); the output schema comes from ``postprocess``'s (else ``predict``'s) return annotation.

Starlette and pydantic are never imported here: a class is recognised by the names in its MRO.
"""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kingpost.errors import ModelLoadError

OPENAI_METHODS: Mapping[str, str] = {
    "chat_completions": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
}
"""Truss's OpenAI-style methods and the path each is served at (POST)."""


class Args(enum.Enum):
    """What a method is called with, decided from its signature."""

    NONE = "()"
    INPUT = "(input)"
    REQUEST = "(request)"
    INPUT_AND_REQUEST = "(input, request)"

    @property
    def wants_request(self) -> bool:
        return self in (Args.REQUEST, Args.INPUT_AND_REQUEST)


def _is_class(obj: Any, module: str, name: str) -> bool:
    return isinstance(obj, type) and any(c.__module__ == module and c.__name__ == name for c in obj.__mro__)


def is_request_type(annotation: Any) -> bool:
    return _is_class(annotation, "starlette.requests", "Request")


def is_pydantic_model(annotation: Any) -> bool:
    return _is_class(annotation, "pydantic.main", "BaseModel") and annotation.__name__ != "BaseModel"


def is_response_type(annotation: Any) -> bool:
    return _is_class(annotation, "starlette.responses", "Response")


def args_of(fn: Any, name: str, where: str) -> Args:
    """How ``fn`` (a method bound or taken from the class; ``self`` is skipped) is called."""
    params = _params(fn)
    if not params:
        return Args.NONE
    if len(params) == 1:
        return Args.REQUEST if is_request_type(params[0].annotation) else Args.INPUT
    if len(params) == 2:
        if is_request_type(params[0].annotation):
            raise ModelLoadError(f"{where}: {name} takes two arguments with the request first; as in Truss, the "
                                 f"request must be the second argument: ({_shown(fn)}).")
        if not is_request_type(params[1].annotation):
            raise ModelLoadError(f"{where}: {name} takes two arguments, so as in Truss its second must be the "
                                 f"request, annotated as starlette.requests.Request or fastapi.Request; found "
                                 f"({_shown(fn)}).")
        return Args.INPUT_AND_REQUEST
    raise ModelLoadError(f"{where}: {name} takes more than two arguments ({_shown(fn)}); Truss allows at most "
                         "the input and the request.")


def _params(fn: Any) -> list[inspect.Parameter]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return [inspect.Parameter("model_input", inspect.Parameter.POSITIONAL_ONLY)]
    if params and params[0].name == "self" and not inspect.ismethod(fn):
        params = params[1:]
    return params


def _shown(fn: Any) -> str:
    return ", ".join(p.name for p in _params(fn))


@dataclass(frozen=True)
class Surface:
    """What the Model class offers beyond plain one-argument hooks, found at load time."""

    args: Mapping[str, Args]  # every method the class defines -> how it is called
    input_type: Any = None  # a pydantic model class, or None
    output_type: Any = None  # a pydantic model class, or None
    output_streams: bool | None = None  # from the return annotation, as Truss's schema says
    returns_response: bool = False  # predict is annotated to return a starlette Response

    @property
    def openai_methods(self) -> tuple[str, ...]:
        return tuple(m for m in OPENAI_METHODS if m in self.args)

    @property
    def websocket(self) -> bool:
        return "websocket" in self.args

    @property
    def wants_request(self) -> bool:
        return any(a.wants_request for a in self.args.values())

    @property
    def skip_input_parsing(self) -> bool:
        """Truss does not parse the body when only requests reach preprocess and predict."""
        pre = self.args.get("preprocess")
        return self.args.get("predict") is Args.REQUEST and (pre is None or pre is Args.REQUEST)

    @property
    def plain(self) -> bool:
        """Every hook takes exactly the input, nothing is typed and no extra route is served."""
        return (all(a is Args.INPUT for n, a in self.args.items() if n not in ("load", "is_healthy",
                                                                                   "setup_environment"))
                and self.input_type is None and not self.openai_methods and not self.websocket
                and not self.returns_response)  # a returned StreamingResponse holds its slot until sent

    def schema(self) -> dict[str, Any] | None:
        """Truss's schema document (``GET /v1/models/model/schema``), None without pydantic types."""
        if self.input_type is None and self.output_type is None and self.output_streams is None:
            return None
        return {
            "input_schema": self.input_type.model_json_schema() if self.input_type is not None else None,
            "output_schema": self.output_type.model_json_schema() if self.output_type is not None else None,
            "supports_streaming": self.output_streams,
        }


CALLED = ("preprocess", "predict", "postprocess", "is_healthy", "setup_environment", "websocket", *OPENAI_METHODS)


def inspect_surface(cls: type, where: str) -> Surface:
    """The Surface of ``cls``; a signature Truss refuses is a ModelLoadError naming ``where``."""
    name = cls.__name__
    args = {m: args_of(getattr(cls, m), f"{name}.{m}", where) for m in CALLED if callable(getattr(cls, m, None))}
    if "is_healthy" in args and args["is_healthy"] is not Args.NONE:
        raise ModelLoadError(f"{where}: {name}.is_healthy must take no argument but self, as in Truss.")
    if "websocket" in args:
        both = [m for m in ("predict", "preprocess", "postprocess") if m in args]
        if both:
            raise ModelLoadError(f"{where}: {name} cannot have both websocket and {', '.join(both)}, as in Truss; "
                                 "a websocket model serves only /v1/websocket.")
        if args["websocket"] is not Args.INPUT:
            raise ModelLoadError(f"{where}: {name}.websocket must take exactly one argument (the websocket).")
        if not inspect.iscoroutinefunction(cls.websocket):  # type: ignore[attr-defined]
            raise ModelLoadError(f"{where}: {name}.websocket must be an async def, as in Truss.")
        return Surface(args=args)
    if "predict" not in args:
        raise ModelLoadError(f"{where}: class {name} has no predict method; predict is required.")
    if "preprocess" in args and args["predict"] is Args.REQUEST:
        raise ModelLoadError(f"{where}: {name}.predict takes only the request, so the output of preprocess would "
                             "be dropped; as in Truss, predict must take the input too: (self, model_input, request).")
    if args.get("postprocess") is Args.REQUEST:
        raise ModelLoadError(f"{where}: {name}.postprocess takes only the request, so the output of predict would "
                             "be dropped; it must take the output: (self, model_output[, request]).")
    first = cls.preprocess if "preprocess" in args else cls.predict  # type: ignore[attr-defined]
    last = cls.postprocess if "postprocess" in args else cls.predict  # type: ignore[attr-defined]
    params = _params(first)
    input_type = _resolved(first, params[0]) if params else None
    if not is_pydantic_model(input_type):
        input_type = None
    output_type, streams = _output(_return_annotation(last))
    returns_response = is_response_type(_return_annotation(cls.predict))  # type: ignore[attr-defined]
    if returns_response and "postprocess" in args:
        raise ModelLoadError(f"{where}: {name}.predict returns a response object, so it cannot have a postprocess "
                             "(as in Truss); move that work into predict or drop postprocess.")
    return Surface(args=args, input_type=input_type, output_type=output_type, output_streams=streams,
                   returns_response=returns_response)


def _resolved(fn: Any, param: inspect.Parameter) -> Any:
    """A parameter's annotation; a string one (``from __future__ import annotations``) resolved if it can be."""
    annotation = param.annotation
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(fn).get(param.name, annotation)
        except Exception:  # noqa: BLE001 - an annotation naming what is not importable stays a string
            return annotation
    return annotation


def _return_annotation(fn: Any) -> Any:
    try:
        annotation = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return None
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(fn).get("return")
        except Exception:  # noqa: BLE001
            return None
    return None if annotation is inspect.Signature.empty else annotation


_STREAMS = (Generator, AsyncGenerator, Iterator, AsyncIterator)


def _output(annotation: Any) -> tuple[Any, bool | None]:
    """(pydantic output type, supports streaming) as Truss's schema reads a return annotation."""
    if annotation is None:
        return None, None
    if is_pydantic_model(annotation):
        return annotation, False
    origin = typing.get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, _STREAMS):
        return None, True
    if isinstance(origin, type) and issubclass(origin, Awaitable):
        (inner,) = typing.get_args(annotation)
        return (inner, False) if is_pydantic_model(inner) else (None, None)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        arms = typing.get_args(annotation)
        models = [a for a in arms if is_pydantic_model(a)]
        models += [typing.get_args(a)[0] for a in arms if isinstance(typing.get_origin(a), type)
                   and issubclass(typing.get_origin(a), Awaitable) and is_pydantic_model(typing.get_args(a)[0])]
        gens = [a for a in arms
                if isinstance(typing.get_origin(a), type) and issubclass(typing.get_origin(a), _STREAMS)]
        if len(arms) == 2 and len(models) == 1 and len(gens) == 1:
            return models[0], True
    return None, None
