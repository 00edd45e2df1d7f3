"""The published API schema: each function serves its OpenAPI document, every route
declares what it answers, and the merged document is exactly what template.yaml routes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from spine.api.openapi import document, document_path
from spine.settings import get_settings
from spine_tools.cli import main
from spine_tools.local.template import Template, load_template
from spine_tools.openapi import api_document, load_app, openapi_path, operations
from tests.integration.gateway import Gateway

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"


@pytest.fixture(autouse=True)
def _settings_of_this_test() -> Iterator[None]:
    """Apps built here read the settings in force now, not ones cached by an earlier
    test (whose models.yaml may be gone)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _routed(template: Template) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every Api event but the documents' own routes and
    the CORS preflights."""
    return {
        (event.method, openapi_path(event.path))
        for spec in template.functions.values()
        for event in spec.events
        if not event.path.startswith("/v1/openapi/") and event.method != "OPTIONS"
    }


def test_merged_document_is_exactly_what_the_template_routes() -> None:
    # Given the template and every function's app
    template = load_template(TEMPLATE)
    # When the whole API's document is built
    result = api_document(template)
    # Then every route is in it under the template's path, and nothing else is
    assert result.disagreements == []
    assert operations(result.document) == _routed(template)
    validate(result.document)  # a valid OpenAPI 3.1 document


def test_every_operation_declares_its_answer_and_errors() -> None:
    doc = api_document(load_template(TEMPLATE)).document
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            success = {code: r for code, r in operation["responses"].items() if code[0] == "2"}
            assert len(success) == 1, (method, path)
            (answer,) = success.values()
            if "application/json" not in answer["content"]:  # a file's bytes
                assert answer["content"]["application/octet-stream"]["schema"]["format"] == "binary"
                continue
            schema = answer["content"]["application/json"]["schema"]
            # A named model, not FastAPI's empty schema of an untyped return.
            assert schema.get("$ref", "").startswith("#/components/schemas/"), (method, path)
            error = operation["responses"]["default"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorResponse"}
            assert "422" not in operation["responses"]
    path_names = {
        p["name"]
        for p in doc["paths"]["/v1/prompts/{id}/versions/{n}"]["get"]["parameters"]
        if p["in"] == "path"
    }
    assert path_names == {"id", "n"}  # the template's names, not FastAPI's (ref, number)


def _without_event(template: Template, function: str, path: str, method: str) -> Template:
    spec = template.functions[function]
    events = tuple(e for e in spec.events if (e.path, e.method) != (path, method))
    assert len(events) == len(spec.events) - 1
    functions = {**template.functions, function: dataclasses.replace(spec, events=events)}
    return dataclasses.replace(template, functions=functions)


def test_a_route_missing_from_the_template_fails_the_gate() -> None:
    # Given a template that no longer routes GET /v1/pricing/{model+}
    template = _without_event(
        load_template(TEMPLATE), "UsageFunction", "/v1/pricing/{model+}", "GET"
    )
    # When the document is built
    result = api_document(template)
    # Then the app's route is named, and the operation sets differ
    assert result.disagreements == [
        "UsageFunction: GET /v1/pricing/{model_id} is a route of its app that "
        "template.yaml does not send to it"
    ]
    assert operations(result.document) != _routed(template)


def test_an_event_no_route_answers_fails_the_gate() -> None:
    template = load_template(TEMPLATE)
    spec = template.functions["ModelsFunction"]
    extra = dataclasses.replace(spec.events[0], name="Ghost", path="/v1/ghosts", method="GET")
    functions = {
        **template.functions,
        "ModelsFunction": dataclasses.replace(spec, events=(*spec.events, extra)),
    }
    result = api_document(dataclasses.replace(template, functions=functions))
    assert result.disagreements == [
        "ModelsFunction: template.yaml sends GET /v1/ghosts to it, "
        "but no route of its app answers it"
    ]


def test_a_function_whose_document_is_not_routed_fails_the_gate() -> None:
    template = _without_event(
        load_template(TEMPLATE), "HealthFunction", "/v1/openapi/health.json", "GET"
    )
    result = api_document(template)
    assert result.disagreements == [
        "HealthFunction: GET /v1/openapi/health.json is not routed to it"
    ]


FUNCTIONS = ["ChatFunction", "ModelsFunction", "PromptsFunction", "CapabilitiesFunction",
             "SessionsFunction", "AuthFunction", "UsageFunction", "HealthFunction",
             "AdminFunction", "BatchesFunction"]  # fmt: skip


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_serves_its_document_without_a_key(function: str, gateway: Gateway) -> None:
    # Given the function's entry module, as Lambda loads it
    app = gateway.module(function).app
    path = document_path(app.state.spine.function_name)
    # When its document is asked for through API Gateway, with no Authorization
    result = gateway.request("GET", path)
    # Then it is the app's own document, public and cacheable
    assert result.status == 200, result.body
    assert result.headers["content-type"] == "application/json"
    assert result.headers["cache-control"] == "public, max-age=300"
    assert "x-request-id" in result.headers
    assert result.json() == json.loads(json.dumps(document(app)))
    # and it describes the function's routes, not itself
    assert path not in result.json()["paths"]
    assert result.json()["paths"]


def test_document_route_is_public_even_where_tokens_are_verified(gateway: Gateway) -> None:
    # verify_jwt is true for the models function in this configuration: its routes
    # need a key, its document does not.
    assert gateway.request("GET", "/v1/models").status == 401
    assert gateway.request("GET", "/v1/openapi/models.json").status == 200
    assert gateway.request("GET", "/v1/openapi/models.json", key="sk-spine-wrong").status == 200


def test_spine_openapi_writes_the_merged_document(tmp_path: Path) -> None:
    output = tmp_path / "openapi.json"
    code = main(["openapi", "--template", str(TEMPLATE), "--output", str(output)])
    assert code == 0
    written: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
    assert operations(written) == _routed(load_template(TEMPLATE))
    assert written["info"]["title"] == "Spine"


def test_chat_answers_are_documented() -> None:
    doc = api_document(load_template(TEMPLATE)).document
    answer = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
    assert "text/event-stream" in answer
    assert "choices" in doc["components"]["schemas"]["TextCompletion"]["properties"]


def test_load_app_refuses_an_entry_without_an_app(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("handler = None\n")
    spec = dataclasses.replace(
        load_template(TEMPLATE).functions["HealthFunction"], code_dir=tmp_path
    )
    with pytest.raises(RuntimeError, match="no FastAPI `app`"):
        load_app(spec)


def _validator(doc: dict[str, Any], method: str, path: str, status: int) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    operation = doc["paths"][path][method.lower()]
    response = operation["responses"].get(str(status)) or operation["responses"]["default"]
    schema = response["content"]["application/json"]["schema"]
    registry = Registry().with_resource("urn:doc", DRAFT202012.create_resource(doc))
    return Draft202012Validator({"$ref": "urn:doc#" + schema["$ref"][1:]}, registry=registry)


def test_answers_on_the_wire_match_the_document(
    gateway: Gateway, env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real answers of the real handlers, checked against the published schema: a
    field a route sends and its model lacks, or the reverse, fails here."""
    from tests.auth.keys import SECRET

    monkeypatch.setenv("SPINE_JWT_SECRET", SECRET)
    doc = api_document(load_template(TEMPLATE)).document
    admin = env.create_key("schema", scopes=["admin"])
    calls: list[tuple[str, str, str, Any]] = [
        ("GET", "/v1/models", "/v1/models", None),
        ("GET", "/v1/models/default", "/v1/models/{model}", None),
        ("GET", "/v1/models/nope", "/v1/models/{model}", None),
        ("GET", "/v1/pricing", "/v1/pricing", None),
        ("GET", "/v1/pricing/prod", "/v1/pricing/{model}", None),
        ("POST", "/v1/estimate-cost", "/v1/estimate-cost", {"model": "prod", "prompt": "hi"}),
        ("GET", "/v1/usage", "/v1/usage", None),
        ("POST", "/v1/auth/token", "/v1/auth/token", {"expires_in": 60}),
        ("GET", "/v1/keys", "/v1/keys", None),
        ("POST", "/v1/keys", "/v1/keys", {"name": "k", "limits": {"daily_budget_usd": "2.5"}}),
        ("POST", "/v1/prompts", "/v1/prompts", {"slug": "hello", "template": "Hi {{who}}"}),
        ("GET", "/v1/prompts", "/v1/prompts", None),
        ("GET", "/v1/prompts/hello/versions", "/v1/prompts/{id}/versions", None),
        ("PUT", "/v1/prompts/hello/labels/prod", "/v1/prompts/{id}/labels/{label}", {"version": 1}),
        (
            "POST",
            "/v1/prompts/hello/render",
            "/v1/prompts/{id}/render",
            {"variables": {"who": "A"}},
        ),
        ("POST", "/v1/sessions", "/v1/sessions", {"model": "gpt-test", "title": "t"}),
        ("GET", "/v1/sessions", "/v1/sessions", None),
        ("GET", "/health", "/health", None),
        ("GET", "/ready", "/ready", None),
    ]
    for method, path, documented, body in calls:
        result = gateway.request(method, path, json_body=body, key=admin)
        validator = _validator(doc, method, documented, result.status)
        errors = [e.message for e in validator.iter_errors(result.json())]
        assert errors == [], (method, path, result.status, errors)
