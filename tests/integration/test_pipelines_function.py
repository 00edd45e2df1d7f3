"""Pipeline definitions through the prompts function's real handler: created with
version 1, new immutable versions, read and listed by their owner only, refused
whole with a 400 naming the field when any part is wrong (nothing stored)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.integration.conftest import Env
from tests.integration.gateway import Gateway

DEFINITION: dict[str, Any] = {
    "inputs": ["ticket"],
    "steps": [
        {"id": "urgent", "type": "condition", "if": "contains(brief.summary, 'outage')"},
        {"id": "brief", "type": "capability", "capability": "summarize",
         "with": {"content": "ticket"}},
        {"id": "result", "type": "transform",
         "expression": "{summary: brief.summary, urgent: urgent}"},
    ],
    "output": "result",
}  # fmt: skip


@pytest.fixture
def alice(env: Env) -> str:
    return env.create_key("alice", principal="alice", tenant="acme", scopes=["prompts:write"])


@pytest.fixture
def bob(env: Env) -> str:
    return env.create_key("bob", principal="bob", tenant="other", scopes=["prompts:write"])


def test_a_pipeline_gets_immutable_versions_and_an_order(
    gateway: Gateway, env: Env, alice: str
) -> None:
    created = gateway.request(
        "POST", "/v1/pipelines", json_body={"slug": "triage", "definition": DEFINITION}, key=alice
    )
    assert created.status == 201, created.body
    pipeline = created.json()
    assert (pipeline["slug"], pipeline["latest_version"]) == ("triage", 1)
    assert pipeline["definition"]["steps"][1]["with"] == {"content": "ticket"}
    pid = pipeline["id"]
    changed = {**DEFINITION, "output": "brief"}
    added = gateway.request(
        "POST", f"/v1/pipelines/{pid}/versions", json_body={"definition": changed}, key=alice
    )
    assert added.status == 201, added.body
    assert added.json()["version"] == 2
    first = gateway.request("GET", f"/v1/pipelines/{pid}/versions/1", key=alice).json()
    assert first["definition"]["output"] == "result"
    assert first["order"].index("brief") < first["order"].index("urgent")
    assert first["order"].index("urgent") < first["order"].index("result")
    latest = gateway.request("GET", f"/v1/pipelines/{pid}", key=alice).json()
    assert (latest["latest_version"], latest["definition"]["output"]) == (2, "brief")
    listed = gateway.request("GET", "/v1/pipelines", key=alice).json()
    assert [p["id"] for p in listed["data"]] == [pid]
    # A stored version is never changed, whatever path tries
    with psycopg.connect(env.db_url) as conn, pytest.raises(psycopg.errors.RestrictViolation):
        conn.execute("UPDATE pipeline_versions SET description = 'x'")


def test_another_tenant_gets_404_and_sees_nothing(gateway: Gateway, alice: str, bob: str) -> None:
    pid = gateway.request(
        "POST", "/v1/pipelines", json_body={"slug": "mine", "definition": DEFINITION}, key=alice
    ).json()["id"]
    for method, path, body in (
        ("GET", f"/v1/pipelines/{pid}", None),
        ("GET", f"/v1/pipelines/{pid}/versions/1", None),
        ("POST", f"/v1/pipelines/{pid}/versions", {"definition": DEFINITION}),
        ("DELETE", f"/v1/pipelines/{pid}", None),
    ):
        result = gateway.request(method, path, json_body=body, key=bob)
        assert result.status == 404, (method, path, result.body)
    assert gateway.request("GET", "/v1/pipelines", key=bob).json()["data"] == []
    assert gateway.request("GET", f"/v1/pipelines/{pid}", key=alice).status == 200
    deleted = gateway.request("DELETE", f"/v1/pipelines/{pid}", key=alice)
    assert deleted.json() == {"id": pid, "object": "pipeline.deleted", "deleted": True}


@pytest.mark.parametrize(
    ("steps", "param"),
    [
        ([{"id": "a", "type": "transform", "expression": "b"},
          {"id": "b", "type": "transform", "expression": "a"}], "definition.steps"),
        ([{"id": "a", "type": "transform", "expression": "missing"}],
         "definition.steps[0].expression"),
        ([{"id": "a", "type": "chat", "model": "gpt-test", "prompt": "Hi {{ who }}"}],
         "definition.steps[0].prompt"),
        ([{"id": "a", "type": "map", "over": "ticket", "concurrency": 99,
           "step": {"type": "transform", "expression": "item"}}],
         "definition.steps[0].map.concurrency"),  # the step type, then its field
        ([{"id": "a", "type": "sql", "query": "DROP TABLE prompts"}], "definition.steps[0]"),
    ],
)  # fmt: skip
def test_a_wrong_definition_is_a_400_naming_the_field_and_stores_nothing(
    gateway: Gateway, env: Env, alice: str, steps: list[dict[str, Any]], param: str
) -> None:
    result = gateway.request(
        "POST",
        "/v1/pipelines",
        json_body={"slug": "bad", "definition": {"inputs": ["ticket"], "steps": steps}},
        key=alice,
    )
    assert result.status == 400, result.body
    assert result.error["param"] == param, result.error
    with psycopg.connect(env.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pipelines").fetchone() == (0,)


def test_writes_need_the_prompts_write_scope(gateway: Gateway, env: Env) -> None:
    reader = env.create_key("reader", principal="reader")
    result = gateway.request(
        "POST", "/v1/pipelines", json_body={"slug": "x", "definition": DEFINITION}, key=reader
    )
    assert result.status == 403, result.body


def test_a_definition_may_be_written_as_yaml(gateway: Gateway, alice: str) -> None:
    yaml_text = (
        "inputs: [ticket]\n"
        "steps:\n"
        "  - id: brief\n"
        "    type: capability\n"
        "    capability: summarize\n"
        "    with: {content: ticket}\n"
        "  - id: result\n"
        "    type: transform\n"
        "    expression: brief.summary\n"
    )
    created = gateway.request(
        "POST", "/v1/pipelines", json_body={"slug": "yaml", "definition": yaml_text}, key=alice
    )
    assert created.status == 201, created.body
    assert created.json()["definition"]["steps"][0]["with"] == {"content": "ticket"}
    broken = gateway.request(
        "POST",
        "/v1/pipelines",
        json_body={"slug": "broken", "definition": "steps: [\n  - id: a\n"},
        key=alice,
    )
    assert broken.status == 400 and broken.error["param"] == "definition"
    assert "not valid YAML" in broken.error["message"]
    # Aliases would let a few bytes expand to gigabytes ("billion laughs"): refused
    laughs = 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nsteps: [*c]\n'
    bomb = gateway.request(
        "POST", "/v1/pipelines", json_body={"slug": "laughs", "definition": laughs}, key=alice
    )
    assert bomb.status == 400 and "aliases are not allowed" in bomb.error["message"]
