"""The capabilities' prompts in the registry: seeded system prompts every caller
reads, only admins change, a caller's own prompt of the same slug overriding one;
prompt edits and rollbacks changing a capability; the executions log; export and
import; category, tags and search."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes import Reply, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway

SUMMARY = {"summary": "Short.", "key_points": []}


@pytest.fixture
def alice(env: Env) -> str:
    return env.create_key("alice", principal="alice", tenant="acme", scopes=["prompts:write"])


@pytest.fixture
def bob(env: Env) -> str:
    return env.create_key("bob", principal="bob", tenant="globex", scopes=["prompts:write"])


@pytest.fixture
def admin(env: Env) -> str:
    return env.create_key("root", principal="root", scopes=["admin"])


def summarize(env: Env, gateway: Gateway, key: str) -> dict[str, Any]:
    """Summarize once; what the provider was sent as system and user messages."""
    env.fakes.script("openai", Reply(openai_api.chat_completion(json.dumps(SUMMARY))))
    result = gateway.request("POST", "/v1/summarize", json_body={"content": "Text."}, key=key)
    assert result.status == 200, result.body
    messages = env.fakes.last("openai").json["messages"]
    return {"system": messages[0]["content"], "user": messages[-1]["content"], **result.json()}


def edit(gateway: Gateway, key: str, slug: str, **fields: Any) -> Any:
    result = gateway.request("PATCH", f"/v1/prompts/{slug}", json_body=fields, key=key)
    return result


def test_an_admin_edit_changes_the_capability_and_a_rollback_restores_it(
    env: Env, gateway: Gateway, alice: str, admin: str
) -> None:
    # Given the seeded prompt, made on first use
    before = summarize(env, gateway, alice)
    assert before["usage"]["prompt_version"] == 1
    # When an admin edits its system prompt through the prompts API
    result = edit(gateway, admin, "summarize", system_prompt="Summarize like a pirate.")
    assert result.status == 200, result.body
    assert result.json()["version"]["version"] == 2
    # Then the capability runs version 2
    after = summarize(env, gateway, alice)
    assert after["system"] == "Summarize like a pirate." and after["usage"]["prompt_version"] == 2
    # And a rollback to version 1 restores the behaviour (as version 3)
    rolled = gateway.request(
        "POST", "/v1/prompts/summarize/rollback", json_body={"version": 1}, key=admin
    )
    assert rolled.status == 200, rolled.body
    restored = summarize(env, gateway, alice)
    assert restored["system"] == before["system"]
    assert restored["usage"]["prompt_version"] == 3


def test_the_production_label_pins_the_version_a_capability_runs(
    env: Env, gateway: Gateway, alice: str, admin: str
) -> None:
    summarize(env, gateway, alice)  # seeds it
    label = gateway.request(
        "PUT", "/v1/prompts/summarize/labels/production", json_body={"version": 1}, key=admin
    )
    assert label.status == 200, label.body
    assert edit(gateway, admin, "summarize", system_prompt="Draft.").status == 200
    # The draft (version 2) is not live until production points at it
    assert summarize(env, gateway, alice)["usage"]["prompt_version"] == 1
    gateway.request(
        "PUT", "/v1/prompts/summarize/labels/production", json_body={"version": 2}, key=admin
    )
    assert summarize(env, gateway, alice)["system"] == "Draft."


def test_system_prompts_are_read_by_everyone_and_changed_only_by_admins(
    env: Env, gateway: Gateway, alice: str
) -> None:
    summarize(env, gateway, alice)
    # Any caller reads it
    read = gateway.request("GET", "/v1/prompts/summarize", key=alice)
    assert read.status == 200 and read.json()["is_system"] is True
    assert read.json()["category"] == "capability"
    assert read.json()["version"]["output_schema"]["required"] == ["summary", "key_points"]
    # But a caller with prompts:write cannot change it
    for method, path, body in [
        ("PATCH", "/v1/prompts/summarize", {"system_prompt": "Mine now."}),
        ("DELETE", "/v1/prompts/summarize", None),
        ("POST", "/v1/prompts/summarize/rollback", {"version": 1}),
        ("PUT", "/v1/prompts/summarize/labels/production", {"version": 1}),
    ]:
        result = gateway.request(method, path, json_body=body, key=alice)
        assert result.status == 403, (method, path, result.body)
        assert result.error["code"] == "system_prompt"


def test_a_callers_own_prompt_of_the_slug_overrides_the_system_prompt_for_it_alone(
    env: Env, gateway: Gateway, alice: str, bob: str
) -> None:
    # Given alice's own summarize prompt
    created = gateway.request(
        "POST",
        "/v1/prompts",
        json_body={
            "slug": "summarize",
            "system_prompt": "Acme house style.",
            "template": "Summarize for Acme: {{ content }}",
        },
        key=alice,
    )
    assert created.status == 201, created.body
    # Then alice's capability call uses it, with only the variables it declares
    mine = summarize(env, gateway, alice)
    assert mine["system"] == "Acme house style." and mine["user"] == "Summarize for Acme: Text."
    assert mine["usage"]["prompt_is_system"] is False
    # And another tenant's caller still gets the system prompt
    theirs = summarize(env, gateway, bob)
    assert theirs["usage"]["prompt_is_system"] is True
    assert "You summarize text faithfully" in theirs["system"]
    # And bob cannot see alice's prompt, only the system one
    assert gateway.request("GET", "/v1/prompts/summarize", key=bob).json()["is_system"] is True
    assert gateway.request("GET", f"/v1/prompts/{created.json()['id']}", key=bob).status == 404


def test_executions_list_capability_calls_with_filters_and_tenant_isolation(
    env: Env, gateway: Gateway, alice: str, bob: str
) -> None:
    summarize(env, gateway, alice)
    env.fakes.script("openai", Reply(openai_api.chat_completion('{"title": "T"}')))
    assert (
        gateway.request("POST", "/v1/infer-title", json_body={"content": "Text."}, key=alice).status
        == 200
    )
    summarize(env, gateway, bob)
    # alice sees her two calls, newest first
    page = gateway.request("GET", "/v1/executions", key=alice).json()
    assert [e["capability"] for e in page["data"]] == ["infer-title", "summarize"]
    first = page["data"][1]
    assert first["prompt"] == "summarize" and first["prompt_version"] == 1
    assert first["model"] == "default" and first["resolved_model"] == "gpt-test"
    assert first["prompt_tokens"] == 9 and first["status"] == "ok" and first["cost_usd"] > 0
    # filters and pagination
    only = gateway.request("GET", "/v1/executions", query="capability=summarize", key=alice)
    assert [e["capability"] for e in only.json()["data"]] == ["summarize"]
    one = gateway.request("GET", "/v1/executions", query="limit=1", key=alice).json()
    assert one["has_more"] is True
    rest = gateway.request(
        "GET", "/v1/executions", query=f"limit=1&after={one['last_id']}", key=alice
    ).json()
    assert [e["capability"] for e in rest["data"]] == ["summarize"] and not rest["has_more"]
    none = gateway.request("GET", "/v1/executions", query="status=error", key=alice).json()
    assert none["data"] == []
    future = gateway.request("GET", "/v1/executions", query="since=2999-01-01", key=alice)
    assert future.json()["data"] == []
    # bob sees only his own
    theirs = gateway.request("GET", "/v1/executions", key=bob).json()["data"]
    assert len(theirs) == 1
    # and may not ask for another principal's
    other = gateway.request("GET", "/v1/executions", query="principal=alice", key=bob)
    assert other.status == 403
    bad = gateway.request("GET", "/v1/executions", query="status=meh", key=bob)
    assert bad.status == 400 and bad.error["param"] == "status"


def test_export_then_import_keeps_every_version_and_label(
    env: Env, gateway: Gateway, alice: str, bob: str
) -> None:
    gateway.request(
        "POST",
        "/v1/prompts",
        json_body={
            "slug": "greet",
            "template": "Hi {{ name }}",
            "category": "support",
            "tags": ["greeting", "v1"],
        },
        key=alice,
    )
    edit(gateway, alice, "greet", template="Hello {{ name }}", system_prompt="Be warm.")
    gateway.request(
        "PUT", "/v1/prompts/greet/labels/production", json_body={"version": 1}, key=alice
    )
    exported = gateway.request("GET", "/v1/prompts/greet/export", key=alice)
    assert exported.status == 200, exported.body
    document = exported.json()
    assert [v["template"] for v in document["prompts"][0]["versions"]] == [
        "Hi {{ name }}",
        "Hello {{ name }}",
    ]
    # When bob (another tenant) imports it
    imported = gateway.request("POST", "/v1/prompts/import", json_body=document, key=bob)
    assert imported.status == 201, imported.body
    copy = gateway.request("GET", "/v1/prompts/greet", key=bob).json()
    assert copy["latest_version"] == 2 and copy["labels"] == {"production": 1}
    assert copy["version"]["system_prompt"] == "Be warm."
    assert copy["category"] == "support" and copy["tags"] == ["greeting", "v1"]
    # And importing it again is a conflict that imports nothing
    again = gateway.request("POST", "/v1/prompts/import", json_body=document, key=bob)
    assert again.status == 409
    broken = {"prompts": [{**document["prompts"][0], "labels": {"production": 9}}]}
    refused = gateway.request("POST", "/v1/prompts/import", json_body=broken, key=alice)
    assert refused.status == 400


def test_list_filters_by_category_tag_and_search(env: Env, gateway: Gateway, alice: str) -> None:
    for slug, category, tags in [("a-one", "support", ["x"]), ("b-two", "sales", ["x", "y"])]:
        gateway.request(
            "POST",
            "/v1/prompts",
            json_body={"slug": slug, "template": "t", "category": category, "tags": tags},
            key=alice,
        )
    summarize(env, gateway, alice)  # seeds a system prompt

    def slugs(query: str) -> list[str]:
        result = gateway.request("GET", "/v1/prompts", query=query, key=alice)
        assert result.status == 200, result.body
        return [p["slug"] for p in result.json()["data"]]

    assert slugs("") == ["b-two", "a-one"]
    assert slugs("category=support") == ["a-one"]
    assert slugs("tag=y") == ["b-two"]
    assert slugs("search=TWO") == ["b-two"]
    assert slugs("search=%25") == []  # a literal %, not a wildcard
    assert "summarize" in slugs("include_system=true")
    assert gateway.request("GET", "/v1/prompts", query="tag=Bad!", key=alice).status == 400


def test_a_tenants_shared_prompt_overrides_the_system_prompt_for_its_principals(
    env: Env, gateway: Gateway
) -> None:
    acme_admin = env.create_key("acme-admin", principal="ops", tenant="acme", scopes=["admin"])
    alice = env.create_key("alice", principal="alice", tenant="acme")
    bob = env.create_key("bob", principal="bob", tenant="other")
    # Given acme's admin shares its own summarize prompt with the tenant
    shared = gateway.request(
        "POST",
        "/v1/prompts",
        json_body={
            "slug": "summarize",
            "template": "ACME STYLE: {{content}}",
            "shared": True,
        },
        key=acme_admin,
    )
    assert shared.status == 201, shared.body
    assert shared.json()["shared"] is True and shared.json()["is_system"] is False
    # When a principal of acme, and one of another tenant, summarize
    summary = json.dumps({"summary": "Short.", "key_points": ["One."]})
    env.fakes.script(
        "openai",
        Reply(openai_api.chat_completion(summary)),
        Reply(openai_api.chat_completion(summary)),
    )
    for key in (alice, bob):
        result = gateway.request(
            "POST",
            "/v1/summarize",
            json_body={"content": "Some text.", "model": "gpt-test"},
            key=key,
        )
        assert result.status == 200, result.body
    alice_sent, bob_sent = (r.json["messages"][-1]["content"] for r in env.fakes.requests("openai"))
    # Then acme's principals run the tenant's prompt, the other tenant the system one
    assert alice_sent.startswith("ACME STYLE:")
    assert not bob_sent.startswith("ACME STYLE:")
    # And acme's principals read it but do not change it; others do not see it
    assert gateway.request("GET", "/v1/prompts/summarize", key=alice).json()["shared"] is True
    writer = env.create_key("writer", principal="w", tenant="acme", scopes=["prompts:write"])
    edit = gateway.request(
        "PATCH", "/v1/prompts/summarize", json_body={"template": "x {{content}}"}, key=writer
    )
    assert edit.status == 403 and edit.error["code"] == "shared_prompt"
    assert gateway.request("GET", "/v1/prompts/summarize", key=bob).json()["shared"] is False
    listed = gateway.request("GET", "/v1/prompts", key=alice).json()["data"]
    assert [p["slug"] for p in listed] == ["summarize"]
    # And only a tenant's admin shares one
    refused = gateway.request(
        "POST",
        "/v1/prompts",
        json_body={"slug": "mine", "template": "{{content}}", "shared": True},
        key=writer,
    )
    assert refused.status == 403 and refused.error["param"] == "shared"
