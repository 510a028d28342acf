"""The OpenAPI description of the HTTP API, built once at startup."""

from __future__ import annotations

from typing import Any

from kingpost.config import Config

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def spec(config: Config, default_name: str) -> dict[str, Any]:
    name = config.model_name or default_name
    predict = {
        "summary": f"Predict with {name}",
        "description": "JSON in and out; msgpack in and out with Content-Type application/octet-stream or "
                       "application/msgpack (numpy arrays included). A streaming model answers chunked, or as "
                       "Server-Sent Events with Accept: text/event-stream, or gathered with Accept: application/json.",
        "parameters": [{"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}},
                                                      "application/msgpack": {"schema": {}}}},
        "responses": {
            "200": {"description": "The postprocessed output.", "content": {"application/json": {"schema": {}}}},
            "400": _error("The body is not valid JSON/msgpack, or the model refused the input."),
            "413": _error("The body exceeds runtime.max_request_bytes."),
            "500": _error("The model raised; the body names the stage."),
            "503": _error("The model is not ready, or the queue is full (see Retry-After)."),
            "504": _error("The request ran past runtime.request_timeout_s."),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"kingpost: {name}", "version": "1", "description": config.description or ""},
        "paths": {
            "/": {"get": {"summary": "Liveness", "responses": {"200": {"description": "The process is up."}}}},
            "/v1/models/{model_name}": {"get": {
                "summary": "Readiness",
                "parameters": [{"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "Loaded and healthy."},
                              "500": _error("Loading failed."),
                              "503": _error("Loading, or unhealthy.")}}},
            "/v1/models/{model_name}:predict": {"post": predict},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "Prometheus text format."}}}},
        },
        "components": {"schemas": {"Error": _ERROR}},
    }


def with_surface(document: dict[str, Any], surface: Any) -> dict[str, Any]:
    """``document`` completed once the model has loaded: its pydantic schemas and the routes of
    Truss's surface it serves (OpenAI-style methods, the websocket, the schema)."""
    from kingpost.surface import OPENAI_METHODS

    paths = document["paths"]
    schemas = document["components"]["schemas"]
    schema = surface.schema()
    predict = paths["/v1/models/{model_name}:predict"]["post"]
    if schema is not None:
        for key, name in (("input_schema", "Input"), ("output_schema", "Output")):
            body = schema[key]
            if body is None:
                continue
            for def_name, definition in body.pop("$defs", {}).items():
                schemas[def_name] = _relinked(definition)
            schemas[name] = _relinked(body)
        if schema["input_schema"] is not None:
            ref = {"$ref": "#/components/schemas/Input"}
            predict["requestBody"]["content"] = {"application/json": {"schema": ref},
                                                 "application/octet-stream": {"schema": ref}}
            predict["responses"]["400"] = _error("The input does not match the schema; the error names the field.")
        if schema["output_schema"] is not None:
            ok = predict["responses"]["200"]["content"]["application/json"]
            ok["schema"] = {"$ref": "#/components/schemas/Output"}
        paths["/v1/models/{model_name}/schema"] = {"get": {
            "summary": "The model's input and output schema (Truss's format)",
            "parameters": predict["parameters"],
            "responses": {"200": {"description": "input_schema, output_schema, supports_streaming."}}}}
    for method in surface.openai_methods:
        paths[OPENAI_METHODS[method]] = {"post": {
            "summary": f"OpenAI-compatible: the model's {method}",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
            "responses": {"200": {"description": "The method's output; streamed as it comes when it yields."},
                          "404": _error("The model has no such method.")}}}
    return document


def _relinked(schema: Any) -> Any:
    """pydantic's ``#/$defs/X`` references, pointed at ``#/components/schemas/X``."""
    if isinstance(schema, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str)
                    else _relinked(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_relinked(v) for v in schema]
    return schema
