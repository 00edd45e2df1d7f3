"""The prompts function through its real Lambda handler, real API Gateway events
built from template.yaml, a real Postgres and the provider SDKs against wire fakes."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.fakes import Reply, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

WRITE = ["prompts:write"]
INJECTION = "'; DROP TABLE prompts; -- \" OR 1=1 /* $1 %s %(x)s \\x00 */"
GREETING = {
    "slug": "greeting",
    "name": "Greeting",
    "description": "Says hello",
    "template": "Hello {{ name }}, welcome to {{place}}!",
}


@pytest.fixture
def alice(env: Env) -> str:
    return env.create_key("alice", principal="alice", tenant="acme", scopes=WRITE)


@pytest.fixture
def bob(env: Env) -> str:
    return env.create_key("bob", principal="bob", tenant="acme", scopes=WRITE)


def create(gateway: Gateway, key: str, **fields: Any) -> dict[str, Any]:
    result = gateway.request("POST", "/v1/prompts", json_body={**GREETING, **fields}, key=key)
    assert result.status == 201, result.body
    body: dict[str, Any] = result.json()
    return body


def version_rows(env: Env, prompt_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(env.db_url, row_factory=dict_row) as conn:
        return list(
            conn.execute(
                "SELECT * FROM prompt_versions WHERE prompt_id = %s ORDER BY version",
                (prompt_id,),
            )
        )


def assert_error(result: Result, status: int, param: str | None) -> dict[str, Any]:
    assert result.status == status, result.body
    error = result.error
    assert error["param"] == param, error
    return error


# --- create, get, list ----------------------------------------------------------------


def test_create_then_get_by_id_and_by_slug(gateway: Gateway, alice: str) -> None:
    # When a prompt is created without declaring its variables
    body = create(gateway, alice)
    # Then it has version 1, variables inferred from the template in order of use
    assert body["object"] == "prompt" and body["slug"] == "greeting"
    assert body["latest_version"] == 1 and body["labels"] == {}
    version = body["version"]
    assert version["version"] == 1 and version["created_by"] == "alice"
    assert [v["name"] for v in version["variables"]] == ["name", "place"]
    assert all(v["required"] for v in version["variables"])
    # And both lookups return the same prompt
    by_id = gateway.request("GET", f"/v1/prompts/{body['id']}", key=alice)
    by_slug = gateway.request("GET", "/v1/prompts/greeting", key=alice)
    assert by_id.status == by_slug.status == 200
    assert by_id.json() == by_slug.json() == body


def test_duplicate_slug_is_a_conflict(gateway: Gateway, alice: str, bob: str) -> None:
    create(gateway, alice)
    again = gateway.request("POST", "/v1/prompts", json_body=GREETING, key=alice)
    assert_error(again, 409, "slug")
    # Slugs are per owner: bob may use the same one.
    assert create(gateway, bob)["slug"] == "greeting"


def test_list_is_newest_first_and_paginated(gateway: Gateway, alice: str, bob: str) -> None:
    ids = [create(gateway, alice, slug=f"p{i}")["id"] for i in range(5)]
    create(gateway, bob, slug="bobs")
    # When listing two at a time
    first = gateway.request("GET", "/v1/prompts", key=alice, query="limit=2").json()
    assert [p["id"] for p in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True and first["last_id"] == ids[3]
    second = gateway.request(
        "GET", "/v1/prompts", key=alice, query=f"limit=2&after={first['last_id']}"
    ).json()
    third = gateway.request(
        "GET", "/v1/prompts", key=alice, query=f"limit=2&after={second['last_id']}"
    ).json()
    # Then every prompt of alice's appears once, and none of bob's
    seen = [p["id"] for page in (first, second, third) for p in page["data"]]
    assert seen == ids[::-1]
    assert third["has_more"] is False


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=%C2%B2", "limit"),  # '²' is a digit to str.isdigit
        ("limit=" + "9" * 5000, "limit"),
        ("after=not-a-uuid", "after"),
        (f"after={uuid.uuid4()}", "after"),
        ("offset=10", "offset"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_list_rejects_bad_pagination(gateway: Gateway, alice: str, query: str, param: str) -> None:
    result = gateway.request("GET", "/v1/prompts", key=alice, query=query)
    assert_error(result, 400, param)


def test_after_cursor_of_another_principal_is_refused(
    gateway: Gateway, alice: str, bob: str
) -> None:
    bobs = create(gateway, bob)
    result = gateway.request("GET", "/v1/prompts", key=alice, query=f"after={bobs['id']}")
    assert_error(result, 400, "after")


# --- versions: update, immutability, rollback ------------------------------------------


def test_update_creates_a_version_only_when_content_changes(
    gateway: Gateway, env: Env, alice: str
) -> None:
    prompt = create(gateway, alice)
    url = f"/v1/prompts/{prompt['id']}"
    [v1_before] = version_rows(env, prompt["id"])
    # When only metadata changes
    meta = gateway.request("PATCH", url, json_body={"name": "Hi", "description": "d"}, key=alice)
    # Then no version is created
    assert meta.status == 200, meta.body
    assert meta.json()["version_created"] is False and meta.json()["latest_version"] == 1
    assert meta.json()["name"] == "Hi"
    # When the same content is sent again
    same = gateway.request(
        "PATCH", url, json_body={"template": GREETING["template"]}, key=alice
    ).json()
    assert same["version_created"] is False and same["latest_version"] == 1
    # When the template changes
    changed = gateway.request(
        "PATCH", url, json_body={"template": "Bye {{ name }}.", "model": "gpt-test"}, key=alice
    ).json()
    # Then version 2 exists, and version 1's stored row is unchanged
    assert changed["version_created"] is True and changed["latest_version"] == 2
    assert changed["version"]["template"] == "Bye {{ name }}."
    assert [v["name"] for v in changed["version"]["variables"]] == ["name"]
    v1_after, v2 = version_rows(env, prompt["id"])
    assert v1_after == v1_before
    assert v2["version"] == 2 and v2["model"] == "gpt-test"
    listed = gateway.request("GET", f"{url}/versions", key=alice).json()
    assert [v["version"] for v in listed["data"]] == [2, 1]
    one = gateway.request("GET", f"{url}/versions/1", key=alice).json()
    assert one["template"] == GREETING["template"] and one["id"] == str(v1_before["id"])


def test_stored_versions_cannot_be_updated_even_in_sql(
    gateway: Gateway, env: Env, alice: str
) -> None:
    prompt = create(gateway, alice)
    with (
        psycopg.connect(env.db_url) as conn,
        pytest.raises(psycopg.errors.RestrictViolation, match="immutable"),
    ):
        conn.execute(
            "UPDATE prompt_versions SET template = 'x' WHERE prompt_id = %s", (prompt["id"],)
        )


def test_versions_pagination(gateway: Gateway, alice: str) -> None:
    prompt = create(gateway, alice)
    url = f"/v1/prompts/{prompt['id']}"
    for i in range(3):
        gateway.request("PATCH", url, json_body={"template": f"v{i} {{{{name}}}}"}, key=alice)
    page = gateway.request("GET", f"{url}/versions", key=alice, query="limit=2").json()
    assert [v["version"] for v in page["data"]] == [4, 3] and page["has_more"] is True
    rest = gateway.request(
        "GET", f"{url}/versions", key=alice, query=f"limit=2&after={page['last_id']}"
    ).json()
    assert [v["version"] for v in rest["data"]] == [2, 1] and rest["has_more"] is False
    bad = gateway.request("GET", f"{url}/versions", key=alice, query="after=zero")
    assert_error(bad, 400, "after")


def test_rollback_appends_a_copy_of_the_old_version(gateway: Gateway, env: Env, alice: str) -> None:
    prompt = create(gateway, alice)
    url = f"/v1/prompts/{prompt['id']}"
    gateway.request("PATCH", url, json_body={"template": "New {{ name }}"}, key=alice)
    # When rolling back to version 1
    result = gateway.request("POST", f"{url}/rollback", json_body={"version": 1}, key=alice)
    # Then version 3 carries version 1's content and says where it came from
    assert result.status == 200, result.body
    body = result.json()
    assert body["version_created"] is True and body["latest_version"] == 3
    v1, v2, v3 = version_rows(env, prompt["id"])
    assert v3["template"] == v1["template"] and v3["content_hash"] == v1["content_hash"]
    assert v3["rolled_back_from"] == 1 and v2["template"] == "New {{ name }}"
    # And rolling back to content the newest version already has appends nothing
    again = gateway.request("POST", f"{url}/rollback", json_body={"version": 1}, key=alice)
    assert again.json()["version_created"] is False and again.json()["latest_version"] == 3
    missing = gateway.request("POST", f"{url}/rollback", json_body={"version": 9}, key=alice)
    assert_error(missing, 404, "version")


# --- labels -----------------------------------------------------------------------------


def test_labels_point_at_versions_and_resolve(gateway: Gateway, alice: str) -> None:
    prompt = create(gateway, alice)
    url = f"/v1/prompts/{prompt['id']}"
    gateway.request("PATCH", url, json_body={"template": "V2 {{ name }}"}, key=alice)
    # When production points at 1 and staging at 2
    prod = gateway.request("PUT", f"{url}/labels/production", json_body={"version": 1}, key=alice)
    assert prod.status == 200, prod.body
    gateway.request("PUT", f"{url}/labels/staging", json_body={"version": 2}, key=alice)
    # Then GET resolves each label to its version, and shows all labels
    got = gateway.request("GET", url, key=alice, query="label=production").json()
    assert got["version"]["version"] == 1
    assert got["labels"] == {"production": 1, "staging": 2}
    assert (
        gateway.request("GET", url, key=alice, query="label=latest").json()["version"]["version"]
        == 2
    )
    assert (
        gateway.request("GET", url, key=alice, query="version=1").json()["version"]["version"] == 1
    )
    # And moving a label, then deleting it, is reflected
    gateway.request("PUT", f"{url}/labels/production", json_body={"version": 2}, key=alice)
    assert (
        gateway.request("GET", url, key=alice, query="label=production").json()["version"][
            "version"
        ]
        == 2
    )
    deleted = gateway.request("DELETE", f"{url}/labels/production", key=alice)
    assert deleted.status == 200 and deleted.json()["deleted"] is True
    assert_error(gateway.request("GET", url, key=alice, query="label=production"), 404, "label")
    assert_error(gateway.request("DELETE", f"{url}/labels/production", key=alice), 404, "label")


@pytest.mark.parametrize(
    ("label", "body", "status", "param"),
    [
        ("production", {"version": 7}, 404, "version"),
        ("production", {"version": 0}, 400, "version"),
        ("production", {"version": "one"}, 400, "version"),
        ("production", {"version": 1, "extra": True}, 400, "extra"),
        ("latest", {"version": 1}, 400, "label"),
        ("Prod%20Label", {"version": 1}, 400, "label"),
        ("x" * 65, {"version": 1}, 400, "label"),
    ],
)
def test_bad_label_requests(
    gateway: Gateway, alice: str, label: str, body: dict[str, Any], status: int, param: str
) -> None:
    prompt = create(gateway, alice)
    result = gateway.request(
        "PUT", f"/v1/prompts/{prompt['id']}/labels/{label}", json_body=body, key=alice
    )
    assert_error(result, status, param)


def test_get_with_both_version_and_label_is_refused(gateway: Gateway, alice: str) -> None:
    create(gateway, alice)
    result = gateway.request("GET", "/v1/prompts/greeting", key=alice, query="version=1&label=x")
    assert_error(result, 400, "label")


# --- render -----------------------------------------------------------------------------


def test_render_fills_variables_and_defaults(gateway: Gateway, alice: str) -> None:
    create(
        gateway,
        alice,
        variables=[
            {"name": "name", "description": "who"},
            {"name": "place", "default": "Spine"},
        ],
    )
    result = gateway.request(
        "POST", "/v1/prompts/greeting/render", json_body={"variables": {"name": "Ada"}}, key=alice
    )
    assert result.status == 200, result.body
    body = result.json()
    assert body["text"] == "Hello Ada, welcome to Spine!"
    assert body["messages"] == [{"role": "user", "content": "Hello Ada, welcome to Spine!"}]
    assert body["version"] == 1


def test_render_never_expands_placeholders_inside_values(gateway: Gateway, alice: str) -> None:
    create(gateway, alice)
    result = gateway.request(
        "POST",
        "/v1/prompts/greeting/render",
        json_body={"variables": {"name": "{{ place }}", "place": "{{ name }}"}},
        key=alice,
    )
    assert result.json()["text"] == "Hello {{ place }}, welcome to {{ name }}!"


@pytest.mark.parametrize(
    ("variables", "param", "code"),
    [
        ({"name": "Ada"}, "variables.place", "missing_variable"),
        ({"name": "Ada", "place": "x", "planet": "Mars"}, "variables.planet", "unknown_variable"),
        ({"name": "Ada", "place": {"nested": 1}}, "variables.place", "invalid_value"),
    ],
)
def test_render_refuses_missing_and_extra_variables(
    gateway: Gateway, alice: str, variables: dict[str, Any], param: str, code: str
) -> None:
    create(gateway, alice)
    result = gateway.request(
        "POST", "/v1/prompts/greeting/render", json_body={"variables": variables}, key=alice
    )
    error = assert_error(result, 400, param)
    assert error["code"] == code
    assert param.split(".", 1)[1] in error["message"] or code == "invalid_value"


def test_render_a_labelled_version(gateway: Gateway, alice: str) -> None:
    prompt = create(gateway, alice)
    url = f"/v1/prompts/{prompt['id']}"
    gateway.request("PATCH", url, json_body={"template": "Yo {{ name }}"}, key=alice)
    gateway.request("PUT", f"{url}/labels/production", json_body={"version": 1}, key=alice)
    values = {"name": "Ada", "place": "Spine"}
    by_label = gateway.request(
        "POST", f"{url}/render", json_body={"variables": values, "label": "production"}, key=alice
    )
    assert by_label.json()["text"] == "Hello Ada, welcome to Spine!"
    # Version 2 has no 'place': sending it is an unknown variable there
    latest = gateway.request("POST", f"{url}/render", json_body={"variables": values}, key=alice)
    assert_error(latest, 400, "variables.place")


# --- create validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"slug": "Bad Slug!"}, "slug"),
        ({"slug": str(uuid.uuid4())}, "slug"),
        ({"slug": INJECTION}, "slug"),
        ({"template": ""}, "template"),
        ({"variables": [{"name": "name"}]}, "variables"),  # 'place' undeclared
        ({"variables": [{"name": "name"}, {"name": "place"}, {"name": "x"}]}, "variables[2]"),
        ({"variables": [{"name": "name"}, {"name": "name"}]}, "variables[1].name"),
        ({"variables": [{"name": "1bad"}]}, "variables[0].name"),
        ({"parameters": {"temperature": 9}}, "parameters.temperature"),
        ({"parameters": {"stream": True}}, "parameters.stream"),
        ({"parameters": {"no_such_param": 1}}, "parameters.no_such_param"),
        ({"surprise": 1}, "surprise"),
        ({"version": 3}, "version"),
    ],
)
def test_create_rejects_bad_fields(
    gateway: Gateway, alice: str, fields: dict[str, Any], param: str
) -> None:
    result = gateway.request("POST", "/v1/prompts", json_body={**GREETING, **fields}, key=alice)
    assert_error(result, 400, param)


def test_oversized_template_is_refused(
    gateway: Gateway, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a body limit above the template limit, so the template check answers
    monkeypatch.setenv("SPINE_SERVICE__MAX_BODY_BYTES", str(1_000_000))
    result = gateway.request(
        "POST", "/v1/prompts", json_body={**GREETING, "template": "x" * 100_001}, key=alice
    )
    error = assert_error(result, 400, "template")
    assert "100000" in error["message"]


def test_update_rejects_unknown_and_empty(gateway: Gateway, alice: str) -> None:
    create(gateway, alice)
    unknown = gateway.request("PATCH", "/v1/prompts/greeting", json_body={"nmae": "x"}, key=alice)
    assert_error(unknown, 400, "nmae")
    empty = gateway.request("PATCH", "/v1/prompts/greeting", json_body={}, key=alice)
    assert empty.status == 400
    null_template = gateway.request(
        "PATCH", "/v1/prompts/greeting", json_body={"template": None}, key=alice
    )
    assert null_template.status == 400


def test_sql_injection_strings_are_stored_and_returned_verbatim(
    gateway: Gateway, env: Env, alice: str
) -> None:
    # Given injection text in every free-text field
    template = INJECTION + " {{ who }}"
    body = create(
        gateway,
        alice,
        name=INJECTION,
        description=INJECTION,
        template=template,
        variables=[{"name": "who", "default": INJECTION, "description": INJECTION}],
        model=INJECTION,
    )
    # Then it comes back verbatim, from the create and from a fresh read
    got = gateway.request("GET", f"/v1/prompts/{body['id']}", key=alice).json()
    for prompt in (body, got):
        assert prompt["name"] == prompt["description"] == INJECTION
        assert prompt["version"]["template"] == template
        assert prompt["version"]["model"] == INJECTION
        assert prompt["version"]["variables"][0]["default"] == INJECTION
        assert prompt["version"]["variables"][0]["description"] == INJECTION
    rendered = gateway.request(
        "POST",
        f"/v1/prompts/{body['id']}/render",
        json_body={"variables": {"who": INJECTION}},
        key=alice,
    ).json()
    assert rendered["text"] == INJECTION + " " + INJECTION
    # And the tables are all still there
    with psycopg.connect(env.db_url) as conn:
        count = conn.execute("SELECT count(*) FROM prompts").fetchone()
    assert count == (1,)
    # And injection text in path and query positions is a 4xx, never a 500
    for path in ("/v1/prompts/x'%20OR%20'1'='1", "/v1/prompts/%27%3B--"):
        assert gateway.request("GET", path, key=alice).status == 400
    assert gateway.request("GET", "/v1/prompts", key=alice, query="after=%27--").status == 400


# --- ids, ownership, scopes -------------------------------------------------------------


def test_invalid_and_unknown_ids(gateway: Gateway, alice: str) -> None:
    prompt = create(gateway, alice)
    assert_error(gateway.request("GET", "/v1/prompts/NOT_A_UUID!", key=alice), 400, "prompt_id")
    assert_error(gateway.request("GET", f"/v1/prompts/{uuid.uuid4()}", key=alice), 404, "prompt_id")
    assert_error(gateway.request("GET", "/v1/prompts/no-such-slug", key=alice), 404, "prompt_id")
    url = f"/v1/prompts/{prompt['id']}/versions"
    for bad in ("abc", "0", "-1", "1.5", "99999999999"):
        assert_error(gateway.request("GET", f"{url}/{bad}", key=alice), 400, "version")
    assert_error(gateway.request("GET", f"{url}/2", key=alice), 404, "version")
    assert_error(
        gateway.request("GET", f"/v1/prompts/{prompt['id']}", key=alice, query="version=x"),
        400,
        "version",
    )


def test_another_principal_gets_404_everywhere(
    gateway: Gateway, env: Env, alice: str, bob: str
) -> None:
    prompt = create(gateway, alice)
    gateway.request(
        "PUT", f"/v1/prompts/{prompt['id']}/labels/production", json_body={"version": 1}, key=alice
    )
    other_tenant = env.create_key("alice2", principal="alice", tenant="other", scopes=WRITE)
    calls: list[tuple[str, str, Any]] = [
        ("GET", "", None),
        ("PATCH", "", {"template": "stolen {{ name }} {{ place }}"}),
        ("DELETE", "", None),
        ("GET", "/versions", None),
        ("GET", "/versions/1", None),
        ("POST", "/rollback", {"version": 1}),
        ("PUT", "/labels/production", {"version": 1}),
        ("DELETE", "/labels/production", None),
        ("POST", "/render", {"variables": {"name": "a", "place": "b"}}),
    ]
    for key in (bob, other_tenant):
        for ref in (prompt["id"], "greeting"):
            for method, suffix, body in calls:
                result = gateway.request(
                    method, f"/v1/prompts/{ref}{suffix}", json_body=body, key=key
                )
                assert result.status == 404, (method, suffix, result.body)
                assert "Hello" not in result.body.decode()
        listed = gateway.request("GET", "/v1/prompts", key=key).json()
        assert listed["data"] == []
        executed = gateway.request(
            "POST",
            "/v1/execute-prompt",
            json_body={"prompt": prompt["id"], "model": "gpt-test", "variables": {}},
            key=key,
        )
        assert executed.status == 404
    # And alice's prompt is untouched
    got = gateway.request("GET", f"/v1/prompts/{prompt['id']}", key=alice).json()
    assert got["latest_version"] == 1 and got["labels"] == {"production": 1}
    assert len(version_rows(env, prompt["id"])) == 1


def test_writes_need_the_scope_reads_do_not(gateway: Gateway, env: Env, alice: str) -> None:
    prompt = create(gateway, alice)
    reader = env.create_key("alice-ro", principal="alice", tenant="acme")
    url = f"/v1/prompts/{prompt['id']}"
    assert gateway.request("GET", url, key=reader).status == 200
    render = gateway.request(
        "POST", f"{url}/render", json_body={"variables": {"name": "a", "place": "b"}}, key=reader
    )
    assert render.status == 200
    writes: list[tuple[str, str, Any]] = [
        ("POST", "/v1/prompts", {**GREETING, "slug": "other"}),
        ("PATCH", url, {"name": "x"}),
        ("DELETE", url, None),
        ("POST", f"{url}/rollback", {"version": 1}),
        ("PUT", f"{url}/labels/production", {"version": 1}),
        ("DELETE", f"{url}/labels/production", None),
    ]
    for method, path, body in writes:
        result = gateway.request(method, path, json_body=body, key=reader)
        assert result.status == 403, (method, path, result.body)
        assert result.error["code"] == "insufficient_scope"
    admin = env.create_key("alice-admin", principal="alice", tenant="acme", scopes=["admin"])
    assert gateway.request("PATCH", url, json_body={"name": "x"}, key=admin).status == 200


def test_anonymous_and_revoked_callers_get_401(gateway: Gateway, env: Env, alice: str) -> None:
    assert gateway.request("GET", "/v1/prompts").status == 401
    assert gateway.request("POST", "/v1/prompts", body=b"{not json").status == 401
    env.revoke(alice)
    assert gateway.request("GET", "/v1/prompts", key=alice).status == 401


def test_delete_removes_prompt_versions_and_labels(gateway: Gateway, env: Env, alice: str) -> None:
    prompt = create(gateway, alice)
    url = f"/v1/prompts/{prompt['id']}"
    gateway.request("PUT", f"{url}/labels/production", json_body={"version": 1}, key=alice)
    result = gateway.request("DELETE", url, key=alice)
    assert result.status == 200
    assert result.json() == {"id": prompt["id"], "object": "prompt.deleted", "deleted": True}
    assert gateway.request("GET", url, key=alice).status == 404
    assert gateway.request("DELETE", url, key=alice).status == 404
    assert version_rows(env, prompt["id"]) == []
    # The slug is free again
    assert create(gateway, alice)["latest_version"] == 1


# --- execute-prompt ---------------------------------------------------------------------


def test_execute_prompt_runs_the_rendered_text_and_records_the_version(
    gateway: Gateway, env: Env, alice: str
) -> None:
    # Given a prompt whose version 1 has a default model and temperature
    prompt = create(gateway, alice, model="gpt-test", parameters={"temperature": 0.1})
    url = f"/v1/prompts/{prompt['id']}"
    gateway.request("PATCH", url, json_body={"template": "V2 {{ name }} {{ place }}"}, key=alice)
    gateway.request("PUT", f"{url}/labels/production", json_body={"version": 1}, key=alice)
    env.fakes.script("openai", Reply(openai_api.chat_completion("Hi Ada")))
    # When executing the production label with an override of max_tokens
    result = gateway.request(
        "POST",
        "/v1/execute-prompt",
        json_body={
            "prompt": "greeting",
            "label": "production",
            "variables": {"name": "Ada", "place": "Spine"},
            "parameters": {"max_tokens": 20},
        },
        key=alice,
    )
    # Then the provider got the rendered text with the merged parameters
    assert result.status == 200, result.body
    sent = env.fakes.last("openai").json
    assert sent["messages"] == [{"role": "user", "content": "Hello Ada, welcome to Spine!"}]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.1 and sent["max_tokens"] == 20
    # And the answer is a chat completion that names the version that ran
    body = result.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hi Ada"
    v1 = version_rows(env, prompt["id"])[0]
    assert body["prompt"] == {
        "id": prompt["id"],
        "slug": "greeting",
        "version": 1,
        "version_id": str(v1["id"]),
    }
    assert result.headers["x-spine-prompt-version-id"] == str(v1["id"])
    # And the usage row records it
    [row] = env.usage_rows()
    assert row["prompt_version_id"] == v1["id"]
    assert row["endpoint"] == "chat.completions" and row["principal"] == "alice"


def test_execute_prompt_model_override_and_errors(gateway: Gateway, env: Env, alice: str) -> None:
    create(gateway, alice)  # no default model
    values = {"name": "Ada", "place": "Spine"}
    no_model = gateway.request(
        "POST",
        "/v1/execute-prompt",
        json_body={"prompt": "greeting", "variables": values},
        key=alice,
    )
    assert_error(no_model, 400, "model")
    missing = gateway.request(
        "POST",
        "/v1/execute-prompt",
        json_body={"prompt": "greeting", "model": "gpt-test", "variables": {"name": "Ada"}},
        key=alice,
    )
    assert_error(missing, 400, "variables.place")
    for extra, param in (
        ({"parameters": {"messages": []}}, "parameters.messages"),
        ({"parameters": {"temperature": 5}}, "parameters.temperature"),
        ({"stream": True}, "stream"),
        ({"version": 1, "label": "production"}, None),
    ):
        result = gateway.request(
            "POST",
            "/v1/execute-prompt",
            json_body={"prompt": "greeting", "model": "gpt-test", "variables": values, **extra},
            key=alice,
        )
        assert result.status == 400, result.body
        if param is not None:
            assert result.error["param"] == param
    unknown_model = gateway.request(
        "POST",
        "/v1/execute-prompt",
        json_body={"prompt": "greeting", "model": "nope", "variables": values},
        key=alice,
    )
    assert_error(unknown_model, 404, "model")
    # None of these reached a provider or wrote a usage row
    assert env.usage_rows() == []
    ok = gateway.request(
        "POST",
        "/v1/execute-prompt",
        json_body={"prompt": "greeting", "model": "claude-test", "variables": values},
        key=alice,
    )
    assert ok.status == 200, ok.body
    [row] = env.usage_rows()
    assert row["provider"] == "anthropic" and row["prompt_version_id"] is not None


def test_execute_prompt_is_admitted_on_the_model_that_runs(env: Env, alice: str) -> None:
    # Given a model limited to 1 request a minute, the default model of a prompt
    env.write_models(
        env.models_path.read_text().replace(
            "    aliases: [gpt-alias]\n", "    aliases: [gpt-alias]\n    limits: {rpm: 1}\n", 1
        )
    )
    gateway = Gateway()
    try:
        create(gateway, alice, model="gpt-test")
        env.fakes.script("openai", Reply(openai_api.chat_completion("Hi")))
        body = {"prompt": "greeting", "variables": {"name": "Ada", "place": "Spine"}}
        # When it runs twice, the request naming no model
        first = gateway.request("POST", "/v1/execute-prompt", json_body=body, key=alice)
        second = gateway.request("POST", "/v1/execute-prompt", json_body=body, key=alice)
    finally:
        gateway.close()
    # Then the model's limit applies to the stored version's model
    assert first.status == 200, first.body
    assert second.status == 429, second.body
    assert "model gpt-test" in second.error["message"]
    assert len(env.fakes.requests("openai")) == 1
