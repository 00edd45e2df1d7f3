"""Claims -> Principal by configured paths; claims of the wrong type are refused."""

from __future__ import annotations

import pytest

from spine.auth.claims import claim_at, principal_from_claims
from spine.errors import AuthenticationError
from spine.settings import AuthSettings


def test_top_level_names_win_over_dotted_paths() -> None:
    claims = {"a.b": 1, "a": {"b": 2}, "cognito:groups": ["x"]}
    assert claim_at(claims, "a.b") == 1
    assert claim_at({"a": {"b": 2}}, "a.b") == 2
    assert claim_at(claims, "cognito:groups") == ["x"]
    assert claim_at(claims, "a.c") is None
    assert claim_at({"a": "text"}, "a.b") is None


def test_nested_paths_lists_and_prefixes() -> None:
    auth = AuthSettings(
        jwt_subject_claim="sub",
        jwt_tenant_claim="app_metadata.org",
        jwt_scope_claims=["scope", "app_metadata.scopes", "cognito:groups"],
        jwt_scope_prefix="spine/",
        jwt_tier_claim="app_metadata.plan",
    )
    principal = principal_from_claims(
        {
            "sub": "u1",
            "scope": "openid spine/admin",
            "app_metadata": {"org": "acme", "scopes": ["chat"], "plan": "pro"},
            "cognito:groups": ["ops"],
        },
        auth,
    )
    assert principal.tenant == "acme"
    assert principal.scopes == frozenset({"openid", "admin", "chat", "ops"})
    assert principal.tier == "pro"
    assert principal.api_key_id is None


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({}, "The token has no 'sub' claim."),
        ({"sub": ""}, "The token has no 'sub' claim."),
        ({"sub": {"id": 1}}, "The token's 'sub' claim must be a string."),
        ({"sub": "u", "tenant": ["a", "b"]}, "The token's 'tenant' claim must be a string."),
        ({"sub": "u", "tier": True}, "The token's 'tier' claim must be a string."),
        ({"sub": "u", "scope": 7}, "The token's 'scope' claim must be a string or a list"),
        ({"sub": "u", "scope": ["a", 1]}, "The token's 'scope' claim must be a string or a list"),
    ],
)
def test_claims_of_the_wrong_shape_are_refused(claims: dict[str, object], message: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        principal_from_claims(claims, AuthSettings())
    assert caught.value.message.startswith(message)
    assert caught.value.code == "invalid_token"


@pytest.mark.parametrize("subject", ["key:3f1c2a9e-0000-4000-8000-000000000000", "key:"])
def test_an_identity_provider_subject_may_not_be_a_key_subject(subject: str) -> None:
    # API keys without a principal act as "key:<id>": an identity provider's user must
    # never act as one (and read its sessions and usage).
    with pytest.raises(AuthenticationError, match="may not start with 'key:'"):
        principal_from_claims({"sub": subject}, AuthSettings())


@pytest.mark.parametrize(
    "claims", [{"sub": "bob\x00"}, {"sub": "bob", "tenant": "acme\x00"}, {"sub": "x" * 257}]
)
def test_claims_stored_with_every_row_refuse_nul_and_excess(claims: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError, match="without NUL"):
        principal_from_claims(claims, AuthSettings(jwt_tenant_claim="tenant"))
