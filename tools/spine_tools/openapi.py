"""The OpenAPI document of the whole API, as template.yaml routes it.

Each function's app builds its own document (`spine.api.openapi.document`); here the
apps are loaded from their entry modules, as Lambda loads them, and each operation is
put under the path of the template's Api event that reaches it: API Gateway's
resource names (`/v1/prompts/{id}`, `/v1/models/{model+}`) rather than FastAPI's
(`/v1/prompts/{ref}`, `/v1/models/{model_id:path}`). Where the two disagree (a route
the template does not send to its function, an event no route answers, a function
whose document is not routed), `Disagreement`s say so.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from spine.api.openapi import document, document_path, merge
from spine.schemas.openai import ChatCompletion, TextCompletion
from spine_tools.local.template import FunctionSpec, Template

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAMETER = re.compile(r"\{([^}]+)\}")
_REF = "#/components/schemas/{model}"

# Answers of the chat routes, which build their responses themselves (JSON, or an
# event stream with `stream: true`) and so declare no response model yet; used only
# where the app's document gives the operation no schema of its own.
CHAT_ANSWERS: dict[tuple[str, str], type[BaseModel]] = {
    ("post", "/v1/chat/completions"): ChatCompletion,
    ("post", "/v1/completions"): TextCompletion,
}


@dataclass
class ApiDocument:
    document: dict[str, Any]
    # Human-readable lines, one per disagreement between the apps and the template.
    disagreements: list[str] = field(default_factory=list)


def openapi_path(template_path: str) -> str:
    """An API Gateway resource path as an OpenAPI path: `{model+}` is `{model}`."""
    return template_path.replace("+}", "}")


def _shape(path: str) -> str:
    """A path with its parameter names erased, to match FastAPI's to the template's."""
    return _PARAMETER.sub("{}", openapi_path(path))


def load_app(spec: FunctionSpec) -> FastAPI:
    """The FastAPI app a function's entry module builds (each exposes `app`)."""
    name = f"_spine_openapi_{spec.logical_id}"
    module_spec = importlib.util.spec_from_file_location(name, spec.code_dir / "app.py")
    if module_spec is None or module_spec.loader is None:
        raise RuntimeError(f"{spec.logical_id}: no entry module at {spec.code_dir / 'app.py'}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if not isinstance(app, FastAPI):
        raise RuntimeError(f"{spec.logical_id}: its entry module has no FastAPI `app`")
    return app


def api_document(template: Template) -> ApiDocument:
    documents = []
    disagreements: list[str] = []
    for spec in template.functions.values():
        if not spec.events:
            continue  # scheduled or queue-driven: no HTTP routes
        app = load_app(spec)
        own_document = document_path(app.state.spine.function_name)
        # CORS preflights (OPTIONS) are answered by middleware, not operations.
        events = {(e.method.lower(), e.path) for e in spec.events if e.method != "OPTIONS"}
        if ("get", own_document) not in events:
            disagreements.append(f"{spec.logical_id}: GET {own_document} is not routed to it")
        routed = {(m, p) for m, p in events if p != own_document}
        documents.append(_as_routed(document(app), routed, spec.logical_id, disagreements))
    merged = merge(documents)
    _document_chat_answers(merged)
    return ApiDocument(merged, disagreements)


def _document_chat_answers(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for (method, path), model in CHAT_ANSWERS.items():
        operation = doc["paths"].get(path, {}).get(method)
        if operation is None:
            continue
        answer = operation.setdefault("responses", {}).setdefault("200", {})
        if answer.get("content", {}).get("application/json", {}).get("schema"):
            continue  # the route declares its own response model
        schema = model.model_json_schema(ref_template=_REF, mode="serialization")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault(model.__name__, schema)
        answer["description"] = (
            f"A {model.__name__} object; with `stream: true`, server-sent events of its "
            "chunks, then `data: [DONE]`"
        )
        answer["content"] = {
            "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}},
            "text/event-stream": {"schema": {"type": "string"}},
        }


def _as_routed(
    doc: dict[str, Any], events: set[tuple[str, str]], function: str, disagreements: list[str]
) -> dict[str, Any]:
    """`doc` with each operation under its template path; operations and events that
    do not meet are reported (an unrouted operation keeps FastAPI's path)."""
    by_shape = {(method, _shape(path)): path for method, path in events}
    paths: dict[str, dict[str, Any]] = {}
    answered = set()
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in HTTP_METHODS:
                continue
            routed_path = by_shape.get((method, _shape(path)))
            if routed_path is None:
                disagreements.append(
                    f"{function}: {method.upper()} {path} is a route of its app that "
                    "template.yaml does not send to it"
                )
                paths.setdefault(path, {})[method] = operation
                continue
            answered.add((method, routed_path))
            target = openapi_path(routed_path)
            paths.setdefault(target, {})[method] = _renamed(operation, path, target)
    for method, path in sorted(events - answered):
        disagreements.append(
            f"{function}: template.yaml sends {method.upper()} {path} to it, "
            "but no route of its app answers it"
        )
    return {**doc, "paths": paths}


def _renamed(operation: dict[str, Any], app_path: str, template_path: str) -> dict[str, Any]:
    """The operation with its path parameters named as in the template's path."""
    names = dict(
        zip(
            [n.split(":")[0] for n in _PARAMETER.findall(app_path)],
            _PARAMETER.findall(template_path),
            strict=True,
        )
    )
    parameters = [
        {**p, "name": names.get(p["name"], p["name"])} if p.get("in") == "path" else p
        for p in operation.get("parameters", [])
    ]
    return {**operation, "parameters": parameters} if parameters else operation


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation of an OpenAPI document."""
    return {
        (method.upper(), path)
        for path, item in doc.get("paths", {}).items()
        for method in item
        if method in HTTP_METHODS
    }
