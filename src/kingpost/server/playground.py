"""The playground page for browsers, and the API docs, from assets packaged with kingpost.

| path | answer |
|---|---|
| GET / (Accept: text/html), /playground | the playground page (API clients get liveness JSON at /) |
| GET /playground/info                   | name, description, state, examples, the input schema, the last reload error |
| GET /playground/static/{name}          | the page's script and style sheet |
| GET /docs, /docs/static/{name}         | Swagger UI from the ``swagger-ui-bundle`` package (``kingpost[docs]``) |

Nothing is fetched from a CDN: the page works on a machine without internet. Assets are read
once, when the app is built.
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kingpost import codecs
from kingpost.config import read_examples
from kingpost.errors import KingpostError
from kingpost.server.routes import Route
from kingpost.types import Params, Receive, Scope, Send, State

if TYPE_CHECKING:
    from kingpost.server.app import App

_HTML = b"text/html; charset=utf-8"
_JSON = b"application/json"
_TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8", ".png": b"image/png",
          ".html": _HTML}
_SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def _asset(name: str) -> bytes:
    return (resources.files("kingpost.server") / "static" / name).read_bytes()


def _swagger_dir() -> Path | None:
    """Swagger UI's files from the ``swagger-ui-bundle`` package, when it is installed."""
    if importlib.util.find_spec("swagger_ui_bundle") is None:
        return None
    import swagger_ui_bundle

    path = Path(str(swagger_ui_bundle.swagger_ui_path))
    return path if (path / "swagger-ui-bundle.js").is_file() else None


_DOCS = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="docs/static/swagger-ui.css"><link rel="icon" href="docs/static/favicon-32x32.png"></head>
<body><div id="ui"></div><script src="docs/static/swagger-ui-bundle.js"></script>
<script>
// swagger-ui-bundle on PyPI carries Swagger UI 4.15, which renders OpenAPI 3.0 only; kingpost's
// description uses nothing of 3.1 that 3.0 cannot show, so it is handed over as 3.0.3.
fetch("openapi.json").then((r) => r.json()).then((spec) => {{
  if (String(spec.openapi).startsWith("3.1")) spec.openapi = "3.0.3";
  SwaggerUIBundle({{spec, dom_id: "#ui", deepLinking: true}});
}});
</script></body></html>
"""

_DOCS_PLAIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:900px;margin:2rem auto}}code{{background:#f2f4f7}}</style>
</head><body><h1>{title}</h1>
<p>Interactive docs need Swagger UI's files: <code>pip install 'kingpost[docs]'</code>. The API description is
at <a href="openapi.json">openapi.json</a>; try the model in the <a href="playground">playground</a>.</p>
<ul id="paths"></ul><script>
fetch("openapi.json").then(r => r.json()).then(spec => {{
  for (const [path, ops] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(ops)) {{
    const li = document.createElement("li");
    li.textContent = method.toUpperCase() + " " + path + " \\u2014 " + (op.summary || "");
    document.getElementById("paths").appendChild(li);
  }}
}});
</script></body></html>
"""


class Playground:
    """The browser-facing routes of one :class:`App`."""

    def __init__(self, app: App, spec: dict[str, Any]) -> None:
        self.app = app
        self.page = _asset("playground.html")
        self.static = {name: _asset(name) for name in ("playground.js", "playground.css")}
        self.schema = input_schema(spec)
        title = codecs.encode_json(spec["info"]["title"]).decode()[1:-1].replace("<", "&lt;")
        self.swagger = _swagger_dir()
        self.docs = (_DOCS if self.swagger is not None else _DOCS_PLAIN).format(title=title).encode()

    def adopt(self, spec: dict[str, Any]) -> None:
        """The description once the model has loaded (a typed input's schema is known only then)."""
        self.schema = input_schema(spec) or self.schema

    def routes(self) -> list[Route]:
        return [
            Route("/playground", self._page, ("GET",), "playground"),
            Route("/playground/info", self._info, ("GET",), "playground"),
            Route("/playground/static/{name}", self._static, ("GET",), "playground"),
            Route("/docs", self._docs, ("GET",), "docs"),
            Route("/docs/static/{name}", self._swagger_static, ("GET",), "docs"),
        ]

    def wants_page(self, scope: Scope) -> bool:
        """Whether a request for ``/`` comes from a browser (its Accept names text/html)."""
        for key, value in scope["headers"]:
            if key == b"accept":
                return b"text/html" in value
        return False

    async def _page(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await _respond(send, 200, self.page, _HTML)

    async def page_at_root(self, send: Send) -> None:
        await _respond(send, 200, self.page, _HTML)

    async def _static(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        name = params["name"]
        body = self.static.get(name)
        if body is None:
            await _respond(send, 404, codecs.encode_json({"error": f"no playground asset {name!r}."}), _JSON)
            return
        await _respond(send, 200, body, _TYPES[Path(name).suffix], cache=True)

    async def _info(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        runtime = self.app.runtime
        config = runtime.config
        try:
            examples = read_examples(runtime.bundle_dir / config.examples_filename)
            examples_error = None
        except KingpostError as exc:
            examples, examples_error = {}, str(exc)
        state = runtime.state
        info = {
            "name": runtime.name,
            "description": config.description or "",
            "state": state.value,
            "error": runtime.failure if state is State.FAILED else examples_error,
            "reload_error": self.app.reload_error,
            "examples": [{"name": name, "input": value} for name, value in examples.items()],
            "schema": self.schema,
        }
        await _respond(send, 200, codecs.encode_json(info), _JSON)

    async def _docs(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        await _respond(send, 200, self.docs, _HTML)

    async def _swagger_static(self, scope: Scope, receive: Receive, send: Send, params: Params) -> None:
        name = params["name"]
        if self.swagger is None or name not in _SWAGGER_FILES:
            await _respond(send, 404, codecs.encode_json({"error": f"no docs asset {name!r}."}), _JSON)
            return
        await _respond(send, 200, (self.swagger / name).read_bytes(), _TYPES[Path(name).suffix], cache=True)


def input_schema(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of predict's input in the OpenAPI description, ``$ref`` resolved; None when
    the bundle declares none (the playground then offers the JSON editor only)."""
    for path, item in spec.get("paths", {}).items():
        if not path.endswith(":predict"):
            continue
        content = item.get("post", {}).get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema") or None
        if isinstance(schema, dict) and "$ref" in schema:
            schema = _resolve(spec, schema["$ref"])
        return schema if isinstance(schema, dict) and schema else None
    return None


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node


async def _respond(send: Send, status: int, body: bytes, content_type: bytes, *, cache: bool = False) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if cache:
        headers.append((b"cache-control", b"public, max-age=300"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

