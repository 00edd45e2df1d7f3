"""Verify JWTs into a Principal, and sign Spine's own short-lived tokens.

Two kinds of token are accepted, told apart by their (unverified) issuer; each is
then verified completely, so a forged issuer only picks which check fails:

- Spine's own (`iss` = `auth.token_issuer`), from `POST /v1/auth/token`: HS256 with
  the JWT secret, audience `auth.token_audience`, Spine's fixed claims.
- An identity provider's (Supabase Auth, Cognito, any OIDC issuer): algorithms from
  `auth.jwt_algorithms`, issuer/audience from `auth.jwt_issuer`/`jwt_audience`,
  claims mapped by `spine.auth.claims`.

Algorithm confusion cannot happen: the key is chosen by the algorithm's family and
the token is verified for that one algorithm only. HS* tokens are checked against the
secret and nothing else; RS/PS/ES/EdDSA tokens against a JWKS key of the matching
type. A token "signed" with the RSA public key as an HMAC secret is therefore checked
against the real secret and fails. `none` is not an algorithm Spine knows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from spine.auth.claims import (
    DEFAULT_TIER,
    check_audience,
    check_required_claims,
    principal_from_claims,
)
from spine.auth.jwks import SigningKey
from spine.auth.principal import Principal
from spine.auth.secret import jwt_secret, secret_kid
from spine.errors import AuthenticationError, InvalidRequestError, ServiceUnavailableError
from spine.observability import get_logger
from spine.settings import Settings

logger = get_logger(__name__)

SPINE_ALGORITHM = "HS256"
# API Gateway caps all headers at 10 KiB; a longer "token" is not worth parsing.
MAX_TOKEN_CHARS = 8192
# Which JWK key type each asymmetric algorithm family needs.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def _refused(message: str, code: str) -> AuthenticationError:
    return AuthenticationError(message, code=code)


def _malformed(why: str) -> AuthenticationError:
    return _refused(f"The bearer token is not a valid JWT: {why}.", "malformed_token")


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before any check: used only to choose how to verify."""
    if len(token) > MAX_TOKEN_CHARS:
        raise _malformed("it is too long")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.DecodeError as exc:
        raise _malformed(str(exc).rstrip(".")) from None
    if not isinstance(header.get("alg"), str):
        raise _malformed("its header has no 'alg'")
    return header, claims


def _decode(
    token: str,
    key: Any,
    algorithm: str,
    *,
    issuer: str | None,
    audience: str | None,
    leeway: int,
    require: list[str],
) -> dict[str, Any]:
    """PyJWT's verification for exactly one algorithm, its errors as 401s."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            options={"require": require, "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise _refused("The token has expired.", "token_expired") from None
    except jwt.ImmatureSignatureError:
        raise _refused("The token is not valid yet (nbf or iat).", "token_not_yet_valid") from None
    except jwt.InvalidIssuerError:
        raise _refused("The token's issuer is not accepted.", "invalid_issuer") from None
    except jwt.InvalidAudienceError:
        raise _refused("The token was issued for another audience.", "invalid_audience") from None
    except jwt.InvalidSignatureError:
        raise _refused("The token's signature does not verify.", "invalid_signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _refused(f"The token has no '{exc.claim}' claim.", "invalid_token") from None
    except jwt.InvalidAlgorithmError:
        raise _refused("The token's algorithm is not accepted.", "unsupported_algorithm") from None
    except jwt.DecodeError as exc:
        raise _malformed(str(exc).rstrip(".")) from None
    except jwt.InvalidKeyError:
        # The key does not suit the algorithm (a JWKS entry of another kind).
        raise _refused(
            "The token's signing key does not fit its algorithm.", "invalid_signature"
        ) from None
    except jwt.InvalidTokenError as exc:
        raise _refused(f"The token is invalid: {exc}", "invalid_token") from None
    return claims


def _secret_or_refuse(settings: Settings) -> str:
    secret = jwt_secret(settings)
    if secret is None:
        logger.warning("hs256 token refused: no jwt secret configured")
        raise _refused(
            "HS256 tokens are not accepted here: no JWT secret is configured.",
            "unsupported_algorithm",
        )
    return secret


async def verify_jwt(token: str, settings: Settings) -> Principal:
    """The principal a valid token names; AuthenticationError (401) otherwise."""
    header, unverified = _unverified(token)
    try:
        if unverified.get("iss") == settings.auth.token_issuer:
            return _spine_principal(_verify_spine_token(token, header, settings))
        claims = await _verify_provider_token(token, header, settings)
        return principal_from_claims(claims, settings.auth)
    except AuthenticationError as exc:
        # Never the token itself: its header and claimed issuer say enough.
        logger.info(
            "jwt refused",
            extra={
                "code": exc.code,
                "alg": header.get("alg"),
                "kid": header.get("kid"),
                "iss": str(unverified.get("iss"))[:200],
            },
        )
        raise


# --- Spine's own tokens -----------------------------------------------------------------


def _verify_spine_token(
    token: str, header: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    if header["alg"] != SPINE_ALGORITHM:
        raise _refused("The token's algorithm is not accepted.", "unsupported_algorithm")
    secret = _secret_or_refuse(settings)
    if header.get("kid") != secret_kid(secret):
        raise _refused(
            "The token was signed with a key this deployment no longer uses.", "unknown_key"
        )
    return _decode(
        token,
        secret,
        SPINE_ALGORITHM,
        issuer=settings.auth.token_issuer,
        audience=settings.auth.token_audience,
        leeway=settings.auth.jwt_leeway_seconds,
        require=["exp", "iat", "sub"],
    )


def _spine_principal(claims: Mapping[str, Any]) -> Principal:
    scope = claims.get("scope", "")
    key_id = claims.get("key_id")
    tenant = claims.get("tenant")
    tier = claims.get("tier", DEFAULT_TIER)
    # Spine wrote these claims; a wrong type means a bug or a leaked secret.
    if not all(isinstance(v, str) for v in (scope, tier)) or not all(
        v is None or isinstance(v, str) for v in (key_id, tenant)
    ):
        raise _refused("The token's claims are not Spine's.", "invalid_token")
    return Principal(
        subject=str(claims["sub"]),
        credential="jwt",
        api_key_id=key_id,
        tenant=tenant,
        scopes=frozenset(scope.split()),
        tier=tier,
    )


# --- identity provider tokens ----------------------------------------------------------


async def _verify_provider_token(
    token: str, header: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    auth = settings.auth
    algorithm = str(header["alg"])
    if algorithm not in auth.jwt_algorithms:
        raise _refused(
            f"Tokens signed with '{algorithm[:20]}' are not accepted.", "unsupported_algorithm"
        )
    key: Any
    if algorithm.startswith("HS"):
        key = _secret_or_refuse(settings)
    else:
        key = (await _provider_key(header, algorithm, settings)).key
    claims = _decode(
        token,
        key,
        algorithm,
        issuer=auth.jwt_issuer,
        audience=None,  # checked below: the claim holding it is configurable
        leeway=auth.jwt_leeway_seconds,
        require=["exp"],
    )
    check_audience(claims, auth)
    check_required_claims(claims, auth)
    return claims


async def _provider_key(
    header: Mapping[str, Any], algorithm: str, settings: Settings
) -> SigningKey:
    from spine.auth.jwks import jwks_cache  # noqa: PLC0415 - the JWKS client only for identity providers' tokens

    if settings.auth.jwt_jwks_url is None:
        raise _refused(
            f"Tokens signed with '{algorithm}' are not accepted: no JWKS URL is configured.",
            "unsupported_algorithm",
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _malformed("its header has no 'kid'")
    key = await jwks_cache(settings.auth).key(kid)
    _check_key_fits(key, algorithm)
    return key


def _check_key_fits(key: SigningKey, algorithm: str) -> None:
    """The JWKS key must be of the token algorithm's type and, where the key names
    its algorithm (or its curve does), be for that very algorithm."""
    fits = key.key_type == _KEY_TYPES.get(algorithm[:2])
    if key.algorithm is not None:
        fits = fits and key.algorithm == algorithm
    if not fits:
        raise _refused(
            "The token's algorithm does not match its signing key.", "unsupported_algorithm"
        )


# --- signing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    expires_at: int  # Unix seconds
    scopes: frozenset[str]


def issue_token(
    principal: Principal,
    settings: Settings,
    *,
    expires_in: int | None = None,
    scopes: Iterable[str] | None = None,
    now: int | None = None,
) -> IssuedToken:
    """A short-lived token for `principal` (the caller of POST /v1/auth/token).

    `expires_in` may shorten the configured lifetime, never lengthen it; `scopes` may
    narrow the principal's scopes, never widen them.
    """
    auth = settings.auth
    secret = jwt_secret(settings)
    if secret is None:
        raise ServiceUnavailableError(
            "The token exchange is not configured: the server has no JWT secret.",
            code="token_exchange_unavailable",
        )
    lifetime = auth.token_ttl_seconds if expires_in is None else expires_in
    if not 1 <= lifetime <= auth.token_ttl_seconds:
        raise InvalidRequestError(
            f"expires_in must be between 1 and {auth.token_ttl_seconds} seconds.",
            param="expires_in",
            code="invalid_value",
        )
    granted = _granted_scopes(principal.scopes, scopes)
    issued_at = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": auth.token_issuer,
        "aud": auth.token_audience,
        "sub": principal.subject,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + lifetime,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(sorted(granted)),
        "tier": principal.tier,
    }
    if principal.tenant is not None:
        claims["tenant"] = principal.tenant
    if principal.api_key_id is not None:
        claims["key_id"] = principal.api_key_id
    token = jwt.encode(
        claims, secret, algorithm=SPINE_ALGORITHM, headers={"kid": secret_kid(secret)}
    )
    return IssuedToken(token, lifetime, issued_at + lifetime, granted)


def _granted_scopes(held: frozenset[str], asked: Iterable[str] | None) -> frozenset[str]:
    # A scope with whitespace cannot travel in the space-separated `scope` claim
    # (it would come back as two scopes); such a scope is never granted.
    usable = frozenset(s for s in held if s and not any(c.isspace() for c in s))
    if asked is None:
        return usable
    wanted = frozenset(asked)
    missing = sorted(wanted - usable)
    if missing:
        raise InvalidRequestError(
            f"The API key does not hold the scope '{missing[0]}'.",
            param="scopes",
            code="invalid_scope",
        )
    return wanted
