"""Identities are (tenant, principal): principal `bob` of tenant acme and principal `bob`
of tenant globex share nothing, through the real handlers. Counters and budgets,
usage reports, sessions, prompts and the response cache each keep them apart; key
managers cannot mint keys that act as another user."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt as pyjwt
import pytest

from spine.auth.jwks import clear_jwks_caches
from spine.auth.secret import secret_kid
from tests.auth.keys import SECRET
from tests.fakes import Reply, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(autouse=True)
def jwt_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPINE_JWT_SECRET", SECRET)
    clear_jwks_caches()
    yield
    clear_jwks_caches()


def set_limits(env: Env, **limits: object) -> None:
    lines = "".join(f"{name} = {value}\n" for name, value in limits.items())
    config = env.root / "config.toml"
    config.write_text(config.read_text() + "\n[limits]\n" + lines)


def chat(gateway: Gateway, key: str, **extra: object) -> Result:
    body = {"model": "gpt-test", "messages": HELLO, **extra}
    return gateway.request("POST", "/v1/chat/completions", json_body=body, key=key)


def replies(env: Env, count: int, completion_tokens: int = 3) -> None:
    usage = openai_api.usage(9, completion_tokens)
    env.fakes.script("openai", *[Reply(openai_api.chat_completion("Hi", usage_body=usage))] * count)


def token_for(subject: str, tenant: str | None, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"iss": "spine", "aud": "spine", "sub": subject, "iat": now}
    body["exp"] = now + 300
    if tenant is not None:
        body["tenant"] = tenant
    body.update(claims)
    return pyjwt.encode(body, SECRET, algorithm="HS256", headers={"kid": secret_kid(SECRET)})


def away_from_a_minute_boundary() -> None:
    into = time.time() % 60
    if into > 50:
        time.sleep(60.5 - into)


# --- counters and budgets ---------------------------------------------------------------


def test_same_principal_in_two_tenants_has_two_rate_limits(env: Env) -> None:
    # Given a default of 5 requests per minute, and principal bob in two tenants
    set_limits(env, default_rpm=5)
    acme_bob = env.create_key("acme bob", principal="bob", tenant="acme")
    globex_bob = env.create_key("globex bob", principal="bob", tenant="globex")
    replies(env, 7)
    away_from_a_minute_boundary()
    gateway = Gateway()
    try:
        # When acme's bob makes 6 calls, then globex's bob makes 1
        acme = [chat(gateway, acme_bob).status for _ in range(6)]
        globex = chat(gateway, globex_bob)
    finally:
        gateway.close()

    # Then acme's bob is refused at his sixth, and globex's bob is untouched by it
    assert acme == [200] * 5 + [429]
    assert globex.status == 200, globex.body
    assert globex.headers["x-ratelimit-remaining-requests"] == "4"


def test_same_subject_in_two_tenants_has_two_budgets(env: Env) -> None:
    # Given a daily budget that one call exhausts (its 20 output tokens cost $0.000012
    # of $0.00001), and JWT subject bob in two tenants
    set_limits(env, daily_budget_usd=0.00001)
    replies(env, 2, completion_tokens=20)
    gateway = Gateway()
    try:
        first = chat(gateway, token_for("bob", "acme"), max_tokens=2)
        second_acme = chat(gateway, token_for("bob", "acme"), max_tokens=2)
        globex = chat(gateway, token_for("bob", "globex"), max_tokens=2)
    finally:
        gateway.close()
    # Then acme's bob spent his budget, and globex's bob still has his
    assert first.status == 200, first.body
    assert second_acme.status == 429
    assert second_acme.error["code"] == "insufficient_quota"
    assert globex.status == 200, globex.body


# --- usage -----------------------------------------------------------------------------


def usage(gateway: Gateway, key: str, query: str = "") -> Result:
    return gateway.request("GET", "/v1/usage", key=key, query=query)


def test_usage_of_the_same_principal_in_another_tenant_is_invisible(env: Env) -> None:
    acme_bob = env.create_key("acme bob", principal="bob", tenant="acme")
    globex_bob = env.create_key("globex bob", principal="bob", tenant="globex")
    replies(env, 3)
    gateway = Gateway()
    try:
        assert chat(gateway, acme_bob).status == 200
        assert chat(gateway, globex_bob).status == 200
        assert chat(gateway, globex_bob).status == 200
        acme_view = usage(gateway, acme_bob).json()
        globex_view = usage(gateway, globex_bob).json()
        # Naming himself (the same principal name) still reads only his tenant
        named = usage(gateway, acme_bob, "principal=bob").json()
    finally:
        gateway.close()
    assert acme_view["totals"]["requests"] == 1
    assert acme_view["filters"]["tenant"] == "acme"
    assert globex_view["totals"]["requests"] == 2
    assert named["totals"]["requests"] == 1


def test_a_tenant_admin_reads_its_tenant_only_and_a_global_admin_every_tenant(env: Env) -> None:
    acme_bob = env.create_key("acme bob", principal="bob", tenant="acme")
    globex_bob = env.create_key("globex bob", principal="bob", tenant="globex")
    acme_admin = env.create_key("acme ops", tenant="acme", scopes=["admin"])
    global_admin = env.create_key("ops", scopes=["admin"])
    replies(env, 3)
    gateway = Gateway()
    try:
        for key in (acme_bob, globex_bob, globex_bob):
            assert chat(gateway, key).status == 200
        tenant_view = usage(gateway, acme_admin).json()
        tenant_bob = usage(gateway, acme_admin, "principal=bob").json()
        other_tenant = usage(gateway, acme_admin, "tenant=globex")
        everyone = usage(gateway, global_admin).json()
        globex_only = usage(gateway, global_admin, "tenant=globex").json()
    finally:
        gateway.close()
    assert tenant_view["totals"]["requests"] == 1
    assert tenant_bob["totals"]["requests"] == 1
    assert other_tenant.status == 403
    assert other_tenant.error["param"] == "tenant"
    assert everyone["totals"]["requests"] == 3
    assert globex_only["totals"]["requests"] == 2


# --- sessions, prompts, cache -------------------------------------------------------------


def test_sessions_and_prompts_of_the_same_principal_in_another_tenant_are_not_found(
    gateway: Gateway, env: Env
) -> None:
    acme_bob = env.create_key("acme bob", principal="bob", tenant="acme", scopes=["prompts:write"])
    globex_bob = env.create_key(
        "globex bob", principal="bob", tenant="globex", scopes=["prompts:write"]
    )
    session = gateway.request(
        "POST", "/v1/sessions", json_body={"model": "gpt-test"}, key=acme_bob
    ).json()
    prompt = gateway.request(
        "POST",
        "/v1/prompts",
        json_body={"slug": "greet", "name": "Greet", "template": "Hello {{name}}"},
        key=acme_bob,
    )
    assert prompt.status == 201, prompt.body

    assert gateway.request("GET", f"/v1/sessions/{session['id']}", key=globex_bob).status == 404
    assert gateway.request("GET", "/v1/sessions", key=globex_bob).json()["data"] == []
    assert gateway.request("GET", "/v1/prompts/greet", key=globex_bob).status == 404
    assert gateway.request("GET", "/v1/sessions", key=acme_bob).json()["data"] != []


def test_the_response_cache_is_not_shared_across_tenants(env: Env) -> None:
    text = env.models_path.read_text()
    env.write_models(text.replace("    defaults: {temperature: 0.5}\n", "    cache_ttl: 600\n", 1))
    acme_bob = env.create_key("acme bob", principal="bob", tenant="acme")
    globex_bob = env.create_key("globex bob", principal="bob", tenant="globex")
    replies(env, 2)
    gateway = Gateway()
    try:
        first = chat(gateway, acme_bob, temperature=0)
        again = chat(gateway, acme_bob, temperature=0)
        other = chat(gateway, globex_bob, temperature=0)
    finally:
        gateway.close()
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert other.headers["x-cache"] == "MISS"
    assert len(env.fakes.requests("openai")) == 2


# --- who a minted key acts as ---------------------------------------------------------------


def create_key(gateway: Gateway, manager: str, **body: Any) -> Result:
    return gateway.request("POST", "/v1/keys", json_body={"name": "minted", **body}, key=manager)


def test_a_key_manager_cannot_mint_a_key_acting_as_another_user(gateway: Gateway, env: Env) -> None:
    # Given alice of tenant acme (an identity-provider user) with a chat session
    alice = token_for("alice", "acme")
    session = gateway.request("POST", "/v1/sessions", json_body={"model": "gpt-test"}, key=alice)
    assert session.status == 201, session.body
    manager = env.create_key("acme manager", principal="mgr", tenant="acme", scopes=["keys:write"])

    # When the acme key manager mints a key with principal "alice"
    minted = create_key(gateway, manager, principal="alice")

    # Then it is refused, and no key was stored
    assert minted.status == 403
    assert minted.error["code"] == "impersonation_not_allowed"
    assert minted.error["param"] == "principal"
    listed = gateway.request("GET", "/v1/keys", key=env.create_key("ops", scopes=["admin"]))
    assert [k["name"] for k in listed.json()["data"] if k["name"] == "minted"] == []


def test_a_minted_key_acts_as_itself_or_its_creator(gateway: Gateway, env: Env) -> None:
    manager = env.create_key("acme manager", principal="mgr", tenant="acme", scopes=["keys:write"])
    own = create_key(gateway, manager)
    personal = create_key(gateway, manager, principal="mgr")
    assert own.status == 201 and personal.status == 201, (own.body, personal.body)
    assert own.json()["principal"] is None  # acts as key:<its id>
    assert personal.json()["principal"] == "mgr"
    # A key of its own reads nothing of its creator's
    mgr_session = gateway.request(
        "POST", "/v1/sessions", json_body={"model": "gpt-test"}, key=manager
    ).json()
    minted_key = own.json()["key"]
    assert gateway.request("GET", f"/v1/sessions/{mgr_session['id']}", key=minted_key).status == 404


def test_impersonation_needs_the_scope_which_only_admins_grant(gateway: Gateway, env: Env) -> None:
    admin = env.create_key("acme admin", tenant="acme", scopes=["admin"])
    writer = env.create_key("acme manager", tenant="acme", scopes=["keys:write"])
    # An admin may mint a key acting as a user of its tenant
    as_alice = create_key(gateway, admin, principal="alice")
    assert as_alice.status == 201, as_alice.body
    # A keys:write manager cannot hand itself the impersonation scope
    escalate = create_key(gateway, writer, scopes=["keys:write", "keys:impersonate"])
    assert escalate.status == 403
    assert escalate.error["code"] == "scope_not_held"
    # A manager holding it may
    impersonator = create_key(gateway, admin, scopes=["keys:write", "keys:impersonate"]).json()
    assert create_key(gateway, impersonator["key"], principal="carol").status == 201


def test_key_subjects_are_reserved(gateway: Gateway, env: Env) -> None:
    admin = env.create_key("ops", scopes=["admin"])
    victim = env.create_key("victim")  # acts as key:<its id>
    victim_id = gateway.request("GET", "/v1/keys", key=admin).json()["data"][-1]["id"]
    # No key may be given another key's subject, not even by an admin
    taken = create_key(gateway, admin, principal=f"key:{victim_id}")
    assert taken.status == 400
    assert taken.error["code"] == "reserved_principal"
    # (identity-provider tokens naming a key subject: tests/auth/test_claims.py)
    assert gateway.request("GET", "/v1/sessions", key=victim).status == 200
