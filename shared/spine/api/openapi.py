"""The OpenAPI document of a function's app, true to what its routes accept and answer.

Routes parse their JSON bodies and query strings themselves, after authentication
(`spine.api.body`, `spine.api.query`), so FastAPI cannot see them. A route says what
it takes with `openapi_extra=json_body(Model)` or `query_params(Model)`, and
`document(app)` adds those models' schemas to the document FastAPI builds; what it
answers is its return type, a response model (`spine.schemas.public`).

Each function serves its own document at `GET /v1/openapi/<function>.json`, without
authentication whatever `verify_jwt` says: it holds the API's shapes, which the
project publishes anyway, and no data; a client generator or a fuzzer needs it before
it has a key. `spine openapi` joins the documents as template.yaml routes them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from spine.schemas.public import ErrorResponse

_REF = "#/components/schemas/{model}"
# Body models by schema name, as routes declare them (their modules are imported
# before any document is built).
_BODY_MODELS: dict[str, type[BaseModel]] = {}


# The `responses` of a route that answers JSON, or server-sent events with
# `stream: true` (it writes either itself and declares both).
EVENT_STREAM_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}
}


def json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """openapi_extra of a route whose JSON body is `model`."""
    _BODY_MODELS[model.__name__] = model
    return {
        "requestBody": {
            "required": required,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}
            },
        },
    }


def query_params(model: type[BaseModel] | None = None, **names: str) -> dict[str, Any]:
    """openapi_extra of a route whose query string is `model`'s fields, or the
    `names` given (name=description), every value a string on the wire."""
    fields = dict(names)
    if model is not None:
        fields.update({name: info.description or "" for name, info in model.model_fields.items()})
    return {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": {"type": "string"},
            }
            for name, description in fields.items()
        ]
    }


# The query of every paginated list: `limit` and `after` (spine.api.query).
PAGE_QUERY = query_params(limit="page size (1 to 100)", after="the last id of the previous page")


def document_path(function_name: str) -> str:
    """Where a function serves its OpenAPI document (template.yaml routes it there)."""
    return f"/v1/openapi/{function_name}.json"


def serve_document(app: FastAPI, function_name: str) -> None:
    """Add the route of the app's document: public, built on the first request and
    kept for the life of the container, left out of the document itself."""

    async def openapi_document() -> JSONResponse:
        # The document changes only with a deployment: caches may keep it a while.
        return JSONResponse(document(app), headers={"Cache-Control": "public, max-age=300"})

    app.add_api_route(
        document_path(function_name),
        openapi_document,
        methods=["GET"],
        include_in_schema=False,
        name=f"{function_name}_openapi_document",
    )


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every declared body model's schema."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    _errors_as_sent(doc, schemas)
    for name in _body_refs(doc):
        model = _BODY_MODELS[name]
        schema = model.model_json_schema(ref_template=_REF)
        for inner, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(inner, definition)
        schemas[name] = schema
    app.openapi_schema = doc
    return doc


def _errors_as_sent(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Every operation's errors in OpenAI's shape, as `spine.api.errors` sends them.
    FastAPI documents a 422 with its own body for routes with path parameters; Spine
    answers a bad request with 400 (and 401, 403, 404, 429, 5xx) in OpenAI's shape."""
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["default"] = {
                "description": "An error, in OpenAI's shape",
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}
                },
            }
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schema = ErrorResponse.model_json_schema(ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    schemas["ErrorResponse"] = schema


def _body_refs(doc: dict[str, Any]) -> list[str]:
    """Names of the declared body models the document's operations refer to."""
    names = []
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            content = operation.get("requestBody", {}).get("content", {})
            ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            if name in _BODY_MODELS and name not in names:
                names.append(name)
    return names


def merge(documents: list[dict[str, Any]], *, title: str = "Spine") -> dict[str, Any]:
    """One document of the whole API from each function's (their paths are disjoint;
    a schema name defined twice must mean the same schema)."""
    merged: dict[str, Any] = {
        "openapi": documents[0]["openapi"] if documents else "3.1.0",
        "info": {"title": title, "version": documents[0]["info"]["version"] if documents else ""},
        "paths": {},
        "components": {"schemas": {}},
    }
    for doc in documents:
        for path, operations in doc.get("paths", {}).items():
            merged["paths"].setdefault(path, {}).update(operations)
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            known = merged["components"]["schemas"].setdefault(name, schema)
            if known != schema:
                raise ValueError(f"schema {name!r} differs between functions")
    return merged
