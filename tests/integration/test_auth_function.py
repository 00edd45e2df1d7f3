"""Token exchange and JWT authentication through the real Lambda handlers: the auth
function trades an API key for a token, and that token (or one from Supabase Auth or
Amazon Cognito, configured in config.toml alone) calls the chat and models functions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt as pyjwt
import pytest

from spine.auth.jwks import clear_jwks_caches
from spine.auth.secret import secret_kid
from tests.auth.keys import SECRET, JwksServer, SigningKey, ec_key, jwks_server, rsa_key
from tests.fakes import Reply, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

HELLO = {"model": "gpt-test", "messages": [{"role": "user", "content": "Say hello"}]}


@pytest.fixture(autouse=True)
def jwt_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPINE_JWT_SECRET", SECRET)
    clear_jwks_caches()
    yield
    clear_jwks_caches()


def add_config(env: Env, toml: str) -> None:
    """Append to the test's config.toml (before the first request loads it)."""
    path = env.root / "config.toml"
    path.write_text(path.read_text() + "\n" + toml)


def exchange(gateway: Gateway, key: str | None, body: Any = None) -> Result:
    return gateway.request("POST", "/v1/auth/token", key=key, json_body=body)


# --- the exchange ---------------------------------------------------------------------


def test_api_key_buys_a_short_lived_spine_token(gateway: Gateway, env: Env) -> None:
    # Given a key with an owner, tenant, scopes and tier
    key = env.create_key(principal="svc-billing", tenant="acme", scopes=["chat"], tier="pro")
    # When it is traded for a token
    result = exchange(gateway, key)
    # Then the token is Spine's, HS256 with a kid, for 15 minutes, with the key's claims
    assert result.status == 200, result.body
    assert result.headers["cache-control"] == "no-store"
    body = result.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 900, "chat")
    header = pyjwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "HS256" and header["kid"].startswith("spine-")
    claims = pyjwt.decode(body["access_token"], SECRET, algorithms=["HS256"], audience="spine")
    assert claims["iss"] == "spine"
    assert (claims["sub"], claims["tenant"], claims["tier"]) == ("svc-billing", "acme", "pro")
    assert claims["exp"] - claims["iat"] == 900 == body["expires_at"] - claims["iat"]
    uuid.UUID(claims["key_id"])


def test_token_lifetime_and_audience_come_from_config(gateway: Gateway, env: Env) -> None:
    add_config(env, '[auth]\ntoken_ttl_seconds = 120\ntoken_audience = "spine-prod"\n')
    token = exchange(gateway, env.create_key()).json()["access_token"]
    claims = pyjwt.decode(token, SECRET, algorithms=["HS256"], audience="spine-prod")
    assert claims["exp"] - claims["iat"] == 120


def test_client_may_shorten_and_narrow_but_not_widen(gateway: Gateway, env: Env) -> None:
    key = env.create_key(scopes=["chat", "prompts:read"])
    narrow = exchange(gateway, key, {"expires_in": 60, "scopes": ["chat"]})
    assert (narrow.json()["expires_in"], narrow.json()["scope"]) == (60, "chat")
    longer = exchange(gateway, key, {"expires_in": 3600})
    assert (longer.status, longer.error["param"]) == (400, "expires_in")
    wider = exchange(gateway, key, {"scopes": ["admin"]})
    assert (wider.status, wider.error["param"], wider.error["code"]) == (
        400,
        "scopes",
        "invalid_scope",
    )
    unknown = exchange(gateway, key, {"ttl": 5})
    assert (unknown.status, unknown.error["param"]) == (400, "ttl")


def test_revoked_key_can_no_longer_get_tokens(gateway: Gateway, env: Env) -> None:
    key = env.create_key()
    assert exchange(gateway, key).status == 200
    env.revoke(key)
    result = exchange(gateway, key)
    assert result.status == 401
    assert (result.error["type"], result.error["code"]) == (
        "authentication_error",
        "invalid_api_key",
    )


def test_a_token_cannot_buy_a_token(gateway: Gateway, env: Env) -> None:
    token = exchange(gateway, env.create_key()).json()["access_token"]
    result = exchange(gateway, token)
    assert (result.status, result.error["code"]) == (401, "api_key_required")


def test_exchange_needs_credentials(gateway: Gateway) -> None:
    result = exchange(gateway, None, {"expires_in": "not even valid"})
    assert (result.status, result.error["code"]) == (401, "missing_api_key")


def test_without_a_secret_the_exchange_is_unavailable(
    gateway: Gateway, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPINE_JWT_SECRET")
    result = exchange(gateway, env.create_key())
    assert (result.status, result.error["code"]) == (503, "token_exchange_unavailable")


# --- Spine's token on the other functions ----------------------------------------------


def test_spine_token_calls_models_and_chat(gateway: Gateway, env: Env) -> None:
    key = env.create_key(principal="svc-billing", tenant="acme")
    token = exchange(gateway, key).json()["access_token"]
    assert gateway.request("GET", "/v1/models", key=token).status == 200
    env.fakes.script("openai", Reply(openai_api.chat_completion("Hi")))
    chat = gateway.request("POST", "/v1/chat/completions", json_body=HELLO, key=token)
    assert chat.status == 200, chat.body
    # The usage row is attributed to the key the token came from.
    [row] = env.usage_rows()
    assert (row["principal"], row["tenant"]) == ("svc-billing", "acme")
    claims = pyjwt.decode(token, SECRET, algorithms=["HS256"], audience="spine")
    assert str(row["api_key_id"]) == claims["key_id"]


def test_expired_or_tampered_spine_token_is_401(gateway: Gateway, env: Env) -> None:
    now = int(time.time())
    expired = pyjwt.encode(
        {"iss": "spine", "aud": "spine", "sub": "u", "iat": now - 999, "exp": now - 99},
        SECRET,
        algorithm="HS256",
        headers={"kid": secret_kid(SECRET)},
    )
    result = gateway.request("GET", "/v1/models", key=expired)
    assert (result.status, result.error["code"]) == (401, "token_expired")
    token = exchange(gateway, env.create_key()).json()["access_token"]
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    result = gateway.request("POST", "/v1/chat/completions", json_body=HELLO, key=tampered)
    assert result.status == 401
    assert result.error["type"] == "authentication_error"


# --- identity providers by configuration alone -----------------------------------------

# As in config.toml; JWKS_URL stands for https://<ref>.supabase.co/auth/v1/.well-known/jwks.json
SUPABASE_CONFIG = """\
[auth]
jwt_issuer = "https://abcdefghijklmnopqrst.supabase.co/auth/v1"
jwt_jwks_url = "JWKS_URL"
jwt_audience = "authenticated"
jwt_algorithms = ["ES256", "RS256"]
jwt_required_claims = { role = "authenticated" }
jwt_tenant_claim = "app_metadata.tenant"
jwt_scope_claims = ["app_metadata.scopes"]
jwt_tier_claim = "app_metadata.tier"
"""

# JWKS_URL stands for https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example/.well-known/jwks.json
COGNITO_CONFIG = """\
[auth]
jwt_issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example"
jwt_jwks_url = "JWKS_URL"
jwt_algorithms = ["RS256"]
jwt_audience = "3n4b5urk1ft4fl3mg5e62d9ado"
jwt_audience_claim = "client_id"
jwt_required_claims = { token_use = "access" }
jwt_scope_claims = ["scope", "cognito:groups"]
jwt_scope_prefix = "spine/"
jwt_tenant_claim = "tenant"
"""


@pytest.fixture
def supabase_key() -> SigningKey:
    return ec_key("7d4f1c9a-supabase")


@pytest.fixture
def cognito_key() -> SigningKey:
    return rsa_key("kvd9Ws5+cognito=")


@pytest.fixture
def supabase(env: Env, supabase_key: SigningKey) -> Iterator[JwksServer]:
    with jwks_server(supabase_key) as server:
        add_config(env, SUPABASE_CONFIG.replace("JWKS_URL", server.url))
        yield server


@pytest.fixture
def cognito(env: Env, cognito_key: SigningKey) -> Iterator[JwksServer]:
    with jwks_server(cognito_key) as server:
        add_config(env, COGNITO_CONFIG.replace("JWKS_URL", server.url))
        yield server


def supabase_claims(**overrides: Any) -> dict[str, Any]:
    """A Supabase Auth user access token's claims."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://abcdefghijklmnopqrst.supabase.co/auth/v1",
        "sub": "0b4c2a7e-5d0b-4b6e-9a55-3c2f1f9a1e10",
        "aud": "authenticated",
        "exp": now + 3600,
        "iat": now,
        "email": "ada@example.com",
        "phone": "",
        "app_metadata": {
            "provider": "email",
            "providers": ["email"],
            "tenant": "acme",
            "scopes": ["chat"],
            "tier": "pro",
        },
        # User-editable: never a source of tenant or scopes.
        "user_metadata": {"tenant": "someone-else", "scopes": ["admin"]},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": "c7a9e2f0-1c1d-4a0e-8f3e-4b5c6d7e8f90",
        "is_anonymous": False,
    }
    claims.update(overrides)
    return claims


def cognito_claims(**overrides: Any) -> dict[str, Any]:
    """An Amazon Cognito user pool access token's claims (tenant added by a pre token
    generation trigger)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "a1b2c3d4-0000-4000-8000-00000000cafe",
        "cognito:groups": ["ops"],
        "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example",
        "version": 2,
        "client_id": "3n4b5urk1ft4fl3mg5e62d9ado",
        "origin_jti": "7e0c6b1c-0000-4000-8000-000000000001",
        "event_id": "0f1e2d3c-0000-4000-8000-000000000002",
        "token_use": "access",
        "scope": "spine/admin aws.cognito.signin.user.admin",
        "auth_time": now,
        "exp": now + 3600,
        "iat": now,
        "jti": "9a8b7c6d-0000-4000-8000-000000000003",
        "username": "ada",
        "tenant": "acme",
    }
    claims.update(overrides)
    return claims


def test_supabase_token_calls_chat_by_configuration_alone(
    gateway: Gateway, env: Env, supabase: JwksServer, supabase_key: SigningKey
) -> None:
    token = supabase_key.sign(supabase_claims(), typ="JWT")
    assert gateway.request("GET", "/v1/models", key=token).status == 200
    env.fakes.script("openai", Reply(openai_api.chat_completion("Hi")))
    chat = gateway.request("POST", "/v1/chat/completions", json_body=HELLO, key=token)
    assert chat.status == 200, chat.body
    [row] = env.usage_rows()
    assert row["principal"] == "0b4c2a7e-5d0b-4b6e-9a55-3c2f1f9a1e10"
    assert row["tenant"] == "acme"  # app_metadata, not user_metadata
    assert row["api_key_id"] is None
    assert supabase.requests == 1  # the JWKS was fetched once for both functions


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"role": "anon"}, "invalid_token"),  # anon key, not a signed-in user
        ({"aud": "anon"}, "invalid_audience"),
        ({"iss": "supabase"}, "invalid_issuer"),
    ],
)
def test_supabase_tokens_that_are_not_user_sessions_are_refused(
    gateway: Gateway,
    supabase: JwksServer,
    supabase_key: SigningKey,
    overrides: dict[str, Any],
    code: str,
) -> None:
    token = supabase_key.sign(supabase_claims(**overrides))
    result = gateway.request("GET", "/v1/models", key=token)
    assert (result.status, result.error["code"]) == (401, code)


def test_cognito_access_token_calls_chat_by_configuration_alone(
    gateway: Gateway, env: Env, cognito: JwksServer, cognito_key: SigningKey
) -> None:
    token = cognito_key.sign(cognito_claims())
    assert gateway.request("GET", "/v1/models/gpt-test", key=token).status == 200
    env.fakes.script("openai", Reply(openai_api.chat_completion("Hi")))
    chat = gateway.request("POST", "/v1/chat/completions", json_body=HELLO, key=token)
    assert chat.status == 200, chat.body
    [row] = env.usage_rows()
    assert (row["principal"], row["tenant"]) == ("a1b2c3d4-0000-4000-8000-00000000cafe", "acme")


def test_cognito_id_token_and_other_clients_are_refused(
    gateway: Gateway, cognito: JwksServer, cognito_key: SigningKey
) -> None:
    # An ID token carries the client id in aud and token_use "id": not an access token.
    id_token = cognito_claims(token_use="id", aud="3n4b5urk1ft4fl3mg5e62d9ado")
    del id_token["client_id"]
    result = gateway.request("GET", "/v1/models", key=cognito_key.sign(id_token))
    assert (result.status, result.error["code"]) == (401, "invalid_audience")
    other_client = cognito_key.sign(cognito_claims(client_id="another-app-client"))
    result = gateway.request("GET", "/v1/models", key=other_client)
    assert (result.status, result.error["code"]) == (401, "invalid_audience")
    not_access = cognito_key.sign(cognito_claims(token_use="id"))
    result = gateway.request("GET", "/v1/models", key=not_access)
    assert (result.status, result.error["code"]) == (401, "invalid_token")


def test_api_keys_keep_working_beside_jwts(
    gateway: Gateway, env: Env, cognito: JwksServer, api_key: str
) -> None:
    assert gateway.request("GET", "/v1/models", key=api_key).status == 200
    result = gateway.request("GET", "/v1/models", key="sk-spine-" + "x" * 43)
    assert (result.status, result.error["code"]) == (401, "invalid_api_key")
