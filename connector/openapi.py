"""OpenAPI entries for request bodies the routes parse themselves.

The rerank routes read the raw body (to bound its size, to accept clients that omit the JSON content type,
and to validate it in one pass with pydantic), so FastAPI cannot infer the request schema; these helpers
publish it in /docs all the same, with the limits this server enforces (from its settings) as maxLength and
maxItems, so that a client generated from the schema sends nothing the server refuses.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from connector.schemas import ErrorBody
from connector.settings import ConnectorSettings
from retrostar_search.engines.connection import Engine

_REF_TEMPLATE = "#/components/schemas/{model}"

# `/metrics` answers Prometheus' text format, not JSON.
METRICS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format.",
        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
    }
}


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses` for a route's error statuses: each a `{"message": ...}` body, described."""
    return {status: {"model": ErrorBody, "description": text} for status, text in descriptions.items()}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body is `model`."""
    schema = {"$ref": _REF_TEMPLATE.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def publish_request_schemas(app: FastAPI, models: list[type[BaseModel]], settings: ConnectorSettings) -> None:
    """Add `models` (and the models they use) to the app's OpenAPI components, with the limits of
    `settings` stated, and the engines the explorer can search (when it is on)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _, definitions = models_json_schema(
                [(model, "validation") for model in models], ref_template=_REF_TEMPLATE
            )
            components = definitions.get("$defs", {})
            _state_limits(components, settings)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            if settings.explore:
                _state_explorer_engines(schema["paths"], list(settings.explorer_connections()))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _state_limits(components: dict[str, Any], limits: ConnectorSettings) -> None:
    """The request limits as JSON Schema keywords, in the rerank requests and the task override."""
    for model in ("CohereRerankRequest", "AnyRerankRequest"):
        properties = components[model]["properties"]
        _typed(properties["query"], "string")["maxLength"] = limits.max_query_chars
        for field in ("documents", "texts"):
            if field not in properties:
                continue
            documents = _typed(properties[field], "array")
            documents["maxItems"] = limits.max_documents
            document = documents["items"]
            _typed(document, "string")["maxLength"] = limits.max_document_chars
            if field == "documents":  # also an object with its text
                _typed(document, "object")["properties"]["text"]["maxLength"] = limits.max_document_chars
    for part in ("query_type", "doc_type", "relevance_definition"):
        _typed(components["TaskOverride"]["properties"][part], "string")["maxLength"] = (
            limits.max_definition_chars
        )


def _state_explorer_engines(paths: dict[str, Any], engines: list[Engine]) -> None:
    """The explorer's `engine` parameter: only the engines this connector has a connection to."""
    for path, operations in paths.items():
        if not path.startswith("/explore/"):
            continue
        for parameter in operations["get"].get("parameters", []):
            if parameter["name"] == "engine":
                configured = {"type": "string", "enum": [engine.value for engine in engines]}
                parameter["schema"] = {"anyOf": [configured, {"type": "null"}], "title": "Engine"}


def _typed(schema: dict[str, Any], json_type: str) -> dict[str, Any]:
    """The part of `schema` for values of `json_type`: itself, or its branch in an `anyOf`."""
    if schema.get("type") == json_type:
        return schema
    return next(branch for branch in schema["anyOf"] if branch.get("type") == json_type)
