"""Verified JWT claims -> Principal, by the claim paths in `auth.jwt_*`.

Only called on claims whose signature, issuer and lifetime were already checked.
A claim of the wrong type is refused (401) rather than guessed at: a tenant that is
an object, or scopes that are a number, mean the token is not what the
configuration expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spine.auth.principal import Principal
from spine.errors import AuthenticationError
from spine.settings import AuthSettings

DEFAULT_TIER = "standard"
# Subjects of API keys without a principal ('key:<id>'); see spine.auth.key_admin.
KEY_SUBJECT_PREFIX = "key:"
MAX_CLAIM_LENGTH = 256


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """A top-level claim named `path` (names may hold ':' '/' '.'), else the value at
    the dotted path (`app_metadata.tenant`); None when absent."""
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _refused(message: str) -> AuthenticationError:
    return AuthenticationError(message, code="invalid_token")


def _text(claims: Mapping[str, Any], path: str | None) -> str | None:
    if path is None:
        return None
    value = claim_at(claims, path)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _refused(f"The token's '{path}' claim must be a string.")
    text = str(value)
    if "\x00" in text or len(text) > MAX_CLAIM_LENGTH:
        # Stored with every usage row, session and prompt of the caller.
        raise _refused(
            f"The token's '{path}' claim must be at most {MAX_CLAIM_LENGTH} characters "
            "without NUL characters."
        )
    return text


def _scope_values(claims: Mapping[str, Any], path: str) -> list[str]:
    value = claim_at(claims, path)
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()  # OAuth 2.0: space-separated
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise _refused(f"The token's '{path}' claim must be a string or a list of strings.")


def scopes_from(claims: Mapping[str, Any], auth: AuthSettings) -> frozenset[str]:
    scopes: set[str] = set()
    for path in auth.jwt_scope_claims:
        for value in _scope_values(claims, path):
            scope = value
            if auth.jwt_scope_prefix and value.startswith(auth.jwt_scope_prefix):
                scope = value[len(auth.jwt_scope_prefix) :]
            if scope:
                scopes.add(scope)
    return frozenset(scopes)


def check_audience(claims: Mapping[str, Any], auth: AuthSettings) -> None:
    """`jwt_audience` must appear in the `jwt_audience_claim` (a string or a list)."""
    if auth.jwt_audience is None:
        return
    value = claim_at(claims, auth.jwt_audience_claim)
    audiences = value if isinstance(value, list) else [value]
    if auth.jwt_audience not in audiences:
        raise AuthenticationError(
            "The token was issued for another audience.", code="invalid_audience"
        )


def check_required_claims(claims: Mapping[str, Any], auth: AuthSettings) -> None:
    for path, expected in auth.jwt_required_claims.items():
        if claim_at(claims, path) != expected:
            raise _refused(f"The token's '{path}' claim must be '{expected}'.")


def principal_from_claims(claims: Mapping[str, Any], auth: AuthSettings) -> Principal:
    """The caller an identity provider's token names."""
    subject = _text(claims, auth.jwt_subject_claim)
    if subject is None:
        raise _refused(f"The token has no '{auth.jwt_subject_claim}' claim.")
    if subject.startswith(KEY_SUBJECT_PREFIX):
        # Reserved for API keys without a principal: an identity provider's user must
        # never act as (and read the sessions and usage of) such a key.
        raise _refused(
            f"The token's '{auth.jwt_subject_claim}' claim may not start with "
            f"'{KEY_SUBJECT_PREFIX}': those subjects belong to Spine's API keys."
        )
    return Principal(
        subject=subject,
        credential="jwt",
        tenant=_text(claims, auth.jwt_tenant_claim),
        scopes=scopes_from(claims, auth),
        tier=_text(claims, auth.jwt_tier_claim) or DEFAULT_TIER,
    )
