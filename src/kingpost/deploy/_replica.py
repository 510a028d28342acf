"""The Ray Serve replica: one kingpost runtime behind kingpost's own ASGI app.

Imported only on Ray workers and by :mod:`kingpost.deploy.ray` once Ray was found: the one module
of kingpost that imports ``ray`` at the top, so that Serve pickles the class by reference.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve
from ray.exceptions import TaskCancelledError

from kingpost.errors import NotReadyError
from kingpost.predictor.streams import ChunkStream
from kingpost.runtime import Runtime


@serve.ingress()
class KingpostReplica:
    """Loads the bundle once; Serve routes nothing to a replica before ``__init__`` returns.

    ``bundle_zip``, when given, holds the bundle's files: they are unpacked into a directory of this
    replica's own, named like ``bundle_dir``, and removed when the replica stops.
    """

    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self, bundle_dir: str, bundle_zip: bytes | None = None, secrets_dir: str | None = None,
        settings: Any = None,
    ) -> None:
        self._unpacked: str | None = None
        self._settings = settings
        self._secrets_dir = secrets_dir
        here = Path(bundle_dir)
        if bundle_zip is not None:
            self._unpacked = tempfile.mkdtemp(prefix="kingpost-ray-")
            here = Path(self._unpacked) / here.name
            with zipfile.ZipFile(io.BytesIO(bundle_zip)) as archive:
                archive.extractall(here)
        self._runtime = Runtime.from_dir(here, secrets_dir=secrets_dir)
        await self._runtime.start()

    def __serve_build_asgi_app__(self) -> Any:
        from kingpost.server.stack import build

        # The model is loaded already; App's lifespan shutdown stops the runtime. API keys, CORS,
        # JSON logs and tracing apply as on `kingpost serve` (keys also from $KINGPOST_API_KEY and
        # the secrets dir on the replica's node).
        return _adapt(build(self._runtime, self._settings, secrets_dir=self._secrets_dir, access_log=False)[1])

    async def check_health(self) -> None:
        """Serve's periodic health check: Serve replaces a replica that fails it."""
        if not await self._runtime.is_healthy():
            raise NotReadyError(f"{self._runtime.name}: the model reports itself unhealthy.")

    async def predict(self, model_input: Any) -> Any:
        """For a DeploymentHandle: ``await handle.predict.remote(x)`` (a model that does not stream)."""
        output = await self._runtime.predict(model_input)
        if type(output) is ChunkStream:
            await output.aclose()
            raise TypeError(f"{self._runtime.name} streams its output: call "
                            "handle.options(stream=True).stream.remote(x) instead of predict.")
        return output

    async def stream(self, model_input: Any) -> AsyncIterator[Any]:
        """For a DeploymentHandle: ``handle.options(stream=True).stream.remote(x)`` yields chunks.

        A model that does not stream yields its whole output as one chunk.
        """
        output = await self._runtime.predict(model_input)
        if type(output) is not ChunkStream:
            yield output
            return
        try:
            async for chunk in output:
                yield chunk
        finally:
            await output.aclose()

    async def __del__(self) -> None:
        if self._unpacked is not None:
            shutil.rmtree(self._unpacked, ignore_errors=True)


def _adapt(app: Any) -> Any:
    """Serve's ASGI differs from a server's in two ways that matter to kingpost's app.

    Mounted at a route prefix, the app gets the full path with the prefix as ``root_path``; and a
    client that goes away shows up as ``TaskCancelledError`` raised by ``receive()`` rather than an
    ``http.disconnect`` message.
    """

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        root = scope.get("root_path")
        if root and scope["type"] == "http" and scope["path"].startswith(root):
            scope = {**scope, "path": scope["path"][len(root):] or "/"}

        async def receive_or_disconnect() -> dict[str, Any]:
            try:
                message: dict[str, Any] = await receive()
            except TaskCancelledError:
                return {"type": "http.disconnect"}
            return message

        await app(scope, receive_or_disconnect, send)

    return asgi
