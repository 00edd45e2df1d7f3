"""Key administration through the real auth function: create with limits (shown
once), list, get, change limits, revoke; scopes gate it, a tenant-bound manager
sees only its tenant, and nobody grants a scope they do not hold."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

HELLO = {"model": "gpt-test", "messages": [{"role": "user", "content": "Say hello"}]}
INJECTION = "x'); DROP TABLE api_keys; --"


def keys(
    gateway: Gateway, key: str | None, method: str = "GET", path: str = "", **kw: Any
) -> Result:
    return gateway.request(method, f"/v1/keys{path}", key=key, **kw)


def chat(gateway: Gateway, key: str) -> Result:
    return gateway.request("POST", "/v1/chat/completions", json_body=HELLO, key=key)


def away_from_a_minute_boundary() -> None:
    """Per-minute windows restart on the minute: two calls straddling it both pass."""
    into = time.time() % 60
    if into > 55:
        time.sleep(60.5 - into)


@pytest.fixture
def admin(env: Env) -> str:
    return env.create_key("admin", scopes=["admin"])


def test_a_created_key_is_shown_once_and_its_limits_apply(
    gateway: Gateway, env: Env, admin: str
) -> None:
    # When an admin creates a key limited to 1 request per minute
    body = {"name": "billing", "principal": "svc-billing", "scopes": ["chat"], "limits": {"rpm": 1}}
    created = keys(gateway, admin, "POST", json_body=body)

    # Then the secret comes back once, not cacheable, and the key carries its limit
    assert created.status == 201, created.body
    assert created.headers["cache-control"] == "no-store"
    new = created.json()
    assert new["key"].startswith("sk-spine-") and new["prefix"].startswith(new["key"][:15])
    assert new["limits"] == {
        "rpm": 1,
        "tpm": None,
        "daily_budget_usd": None,
        "monthly_budget_usd": None,
    }
    listed = keys(gateway, admin).json()["data"]
    assert new["id"] in [k["id"] for k in listed]
    assert all("key" not in k for k in listed)
    assert keys(gateway, admin, path=f"/{new['id']}").json()["principal"] == "svc-billing"

    # And the key works, once a minute
    away_from_a_minute_boundary()
    assert chat(gateway, new["key"]).status == 200
    refused = chat(gateway, new["key"])
    assert refused.status == 429
    assert refused.headers["x-ratelimit-limit-requests"] == "1"


def test_limits_are_changed_and_handed_back_to_the_default(
    gateway: Gateway, env: Env, admin: str
) -> None:
    created = keys(gateway, admin, "POST", json_body={"name": "k", "limits": {"rpm": 1}}).json()
    path = f"/{created['id']}"

    changed = keys(
        gateway,
        admin,
        "PATCH",
        path,
        json_body={"name": "renamed", "limits": {"tpm": 0, "daily_budget_usd": "2.50"}},
    )
    assert changed.status == 200, changed.body
    assert changed.json()["name"] == "renamed"
    # Fields left out keep their value
    assert changed.json()["limits"] == {
        "rpm": 1,
        "tpm": 0,
        "daily_budget_usd": "2.5",
        "monthly_budget_usd": None,
    }
    cleared = keys(gateway, admin, "PATCH", path, json_body={"limits": {"rpm": None}})
    assert cleared.json()["limits"]["rpm"] is None
    # No longer limited to 1 rpm: two calls pass
    assert [chat(gateway, created["key"]).status for _ in range(2)] == [200, 200]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"limits": {"rpm": -1}}, "limits.rpm"),
        ({"limits": {"daily_budget_usd": "1e20"}}, "limits.daily_budget_usd"),
        ({"limits": {"burst": 3}}, "limits.burst"),
        ({"owner": "x"}, "owner"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_updates_name_the_field_and_change_nothing(
    gateway: Gateway, env: Env, admin: str, body: dict[str, Any], param: str
) -> None:
    created = keys(gateway, admin, "POST", json_body={"name": "k", "limits": {"rpm": 5}}).json()
    result = keys(gateway, admin, "PATCH", f"/{created['id']}", json_body=body)
    assert result.status == 400, result.body
    assert result.error["param"] == param
    after = keys(gateway, admin, path=f"/{created['id']}").json()
    assert (after["name"], after["limits"]["rpm"]) == ("k", 5)


def test_a_revoked_key_stops_working_and_leaves_the_active_list(
    gateway: Gateway, env: Env, admin: str
) -> None:
    created = keys(gateway, admin, "POST", json_body={"name": "k"}).json()
    assert chat(gateway, created["key"]).status == 200

    revoked = keys(gateway, admin, "DELETE", f"/{created['id']}")

    assert revoked.status == 200 and revoked.json()["revoked_at"] is not None
    assert chat(gateway, created["key"]).status == 401
    assert created["id"] not in [k["id"] for k in keys(gateway, admin).json()["data"]]
    everything = keys(gateway, admin, query="include_revoked=true").json()["data"]
    assert created["id"] in [k["id"] for k in everything]


def test_key_routes_need_their_scopes(gateway: Gateway, env: Env) -> None:
    plain = env.create_key("plain", scopes=["chat"])
    reader = env.create_key("reader", scopes=["keys:read"])
    target = env.create_key("target")
    [target_id] = [k["id"] for k in keys(gateway, reader).json()["data"] if k["name"] == "target"]

    assert keys(gateway, None).status == 401
    assert keys(gateway, plain).status == 403
    assert keys(gateway, plain).error["code"] == "insufficient_scope"
    assert keys(gateway, reader).status == 200
    assert keys(gateway, reader, "POST", json_body={"name": "x"}).status == 403
    assert keys(gateway, reader, "DELETE", f"/{target_id}").status == 403
    assert keys(gateway, reader, "PATCH", f"/{target_id}", json_body={"name": "y"}).status == 403
    # Nothing changed: the target still works
    assert chat(gateway, target).status == 200


def test_nobody_grants_a_scope_they_do_not_hold(gateway: Gateway, env: Env) -> None:
    manager = env.create_key("manager", scopes=["keys:write", "chat"])

    escalated = keys(gateway, manager, "POST", json_body={"name": "x", "scopes": ["admin"]})
    assert escalated.status == 403, escalated.body
    assert escalated.error["param"] == "scopes"
    granted = keys(gateway, manager, "POST", json_body={"name": "x", "scopes": ["chat"]})
    assert granted.status == 201


def test_a_tenant_manager_sees_and_changes_only_its_tenant(gateway: Gateway, env: Env) -> None:
    acme_admin = env.create_key("acme-admin", tenant="acme", scopes=["admin"])
    globex = env.create_key("globex-key", tenant="globex")
    root = env.create_key("root", scopes=["admin"])
    [globex_id] = [k["id"] for k in keys(gateway, root).json()["data"] if k["name"] == "globex-key"]

    # Another tenant's key does not exist for this manager, whatever the verb
    assert [k["tenant"] for k in keys(gateway, acme_admin).json()["data"]] == ["acme"]
    assert keys(gateway, acme_admin, path=f"/{globex_id}").status == 404
    assert (
        keys(gateway, acme_admin, "PATCH", f"/{globex_id}", json_body={"name": "x"}).status == 404
    )
    assert keys(gateway, acme_admin, "DELETE", f"/{globex_id}").status == 404
    assert chat(gateway, globex).status == 200
    assert keys(gateway, root, path=f"/{globex_id}").json()["name"] == "globex-key"

    # New keys land in the manager's tenant; another tenant is refused
    mine = keys(gateway, acme_admin, "POST", json_body={"name": "new"})
    assert mine.status == 201 and mine.json()["tenant"] == "acme"
    theirs = keys(gateway, acme_admin, "POST", json_body={"name": "new", "tenant": "globex"})
    assert theirs.status == 403 and theirs.error["param"] == "tenant"


@pytest.mark.parametrize("key_id", ["not-a-uuid", str(uuid.uuid4())])
def test_unknown_or_malformed_ids_are_404(
    gateway: Gateway, env: Env, admin: str, key_id: str
) -> None:
    result = keys(gateway, admin, path=f"/{key_id}")
    assert result.status == 404, result.body
    assert result.error["param"] == "key_id"


def test_a_traversal_path_reaches_no_key(gateway: Gateway, env: Env, admin: str) -> None:
    result = keys(gateway, admin, path="/..%2F..%2Fv1%2Fkeys")
    assert result.status == 404, result.body
    assert "data" not in result.json() and "key" not in result.json()


def test_injection_strings_are_stored_verbatim(gateway: Gateway, env: Env, admin: str) -> None:
    created = keys(
        gateway, admin, "POST", json_body={"name": INJECTION, "principal": INJECTION}
    ).json()
    fetched = keys(gateway, admin, path=f"/{created['id']}").json()
    assert (fetched["name"], fetched["principal"]) == (INJECTION, INJECTION)
    assert len(keys(gateway, admin).json()["data"]) == 2


def test_expiry_must_be_in_the_future(gateway: Gateway, env: Env, admin: str) -> None:
    past = keys(gateway, admin, "POST", json_body={"name": "k", "expires_at": 1_000_000})
    assert past.status == 400 and past.error["param"] == "expires_at"
