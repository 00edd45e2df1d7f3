"""The OpenAPI document of a function's app, true to what its routes accept.

Routes parse their JSON bodies and query strings themselves, after authentication
(`spine.api.body`, `spine.api.query`), so FastAPI cannot see them. A route says what
it takes with `openapi_extra=json_body(Model)` or `query_params(Model)`, and
`document(app)` adds those models' schemas to the document FastAPI builds.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"
# Body models by schema name, as routes declare them (their modules are imported
# before any document is built).
_BODY_MODELS: dict[str, type[BaseModel]] = {}


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


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every declared body model's schema."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in _body_refs(doc):
        model = _BODY_MODELS[name]
        schema = model.model_json_schema(ref_template=_REF)
        for inner, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(inner, definition)
        schemas[name] = schema
    app.openapi_schema = doc
    return doc


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
