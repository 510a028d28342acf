"""Truss's OpenAI-compatible routes: ``POST /v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/messages``, ``/v1/responses``.

Each calls the model method of the same name with the decoded JSON body, under the same predict
slots, queue limit and request timeout as ``predict``. A method that yields streams its chunks as
they come (the model writes the ``data: ...`` lines, as under Truss). A model without the method
answers 404, naming it.
"""

from __future__ import annotations

from kingpost.server.routes import Route
from kingpost.server.surface import SurfaceRoutes
from kingpost.surface import OPENAI_METHODS
from kingpost.types import Endpoint, Params, Receive, Scope, Send


def routes(surface: SurfaceRoutes) -> list[Route]:
    return [Route(path, _endpoint(surface, method), ("POST",), f"openai:{method}")
            for method, path in OPENAI_METHODS.items()]


def _endpoint(surface: SurfaceRoutes, method: str) -> Endpoint:
    async def endpoint(scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await surface.call(method, scope, receive, send)
    return endpoint
