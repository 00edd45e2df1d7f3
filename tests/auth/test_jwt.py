"""spine.auth.jwt: every token Spine must refuse is refused for its own reason, and
the tokens it must accept are accepted. Keys are generated here; the JWKS is served
over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import time

import jwt as pyjwt
import pytest

from spine.auth.jwt import issue_token, verify_jwt
from spine.auth.principal import Principal
from spine.auth.secret import JwtSecretError, secret_kid
from spine.errors import AuthenticationError, InvalidRequestError, ServiceUnavailableError
from spine.settings import Settings
from tests.auth.conftest import settings_with
from tests.auth.keys import (
    SECRET,
    JwksServer,
    SigningKey,
    claims,
    hmac_token,
    unsigned_token,
)


async def refused(token: str, settings: Settings) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        await verify_jwt(token, settings)
    assert caught.value.status_code == 401
    return caught.value


# --- accepted ---------------------------------------------------------------------------


async def test_rs256_token_from_jwks_maps_claims_to_a_principal(
    idp: Settings, rsa: SigningKey
) -> None:
    token = rsa.sign(claims(tenant="acme", scope="read admin", tier="pro"))
    principal = await verify_jwt(token, idp)
    assert principal == Principal(
        subject="user-42",
        credential="jwt",
        tenant="acme",
        scopes=frozenset({"read", "admin"}),
        tier="pro",
    )


async def test_es256_token_from_jwks_is_accepted(idp: Settings, ec: SigningKey) -> None:
    principal = await verify_jwt(ec.sign(claims()), idp)
    assert (principal.subject, principal.tier, principal.scopes) == (
        "user-42",
        "standard",
        frozenset(),
    )


async def test_clock_skew_within_leeway_passes(idp: Settings, rsa: SigningKey) -> None:
    # Given a token that expired 10 s ago and becomes valid in 10 s (leeway 30 s)
    now = int(time.time())
    token = rsa.sign(claims(iat=now + 10, nbf=now + 10, exp=now - 10))
    # Then it is accepted
    assert (await verify_jwt(token, idp)).subject == "user-42"


async def test_hs256_provider_token_with_the_shared_secret(jwks: JwksServer) -> None:
    # A Supabase project on its legacy HS256 JWT secret.
    settings = settings_with(
        jwt_issuer="https://idp.example/", jwt_audience="spine-api", jwt_algorithms=["HS256"]
    )
    token = pyjwt.encode(claims(), SECRET, algorithm="HS256")
    assert (await verify_jwt(token, settings)).subject == "user-42"


# --- refused, each for its own reason -----------------------------------------------------


async def test_alg_none_is_refused(idp: Settings) -> None:
    token = unsigned_token(claims(), {"alg": "none", "typ": "JWT"})
    assert (await refused(token, idp)).code == "unsupported_algorithm"
    # Also when it claims to be Spine's own token.
    spine = unsigned_token(claims(iss="spine", aud="spine"), {"alg": "none"})
    assert (await refused(spine, idp)).code == "unsupported_algorithm"


async def test_algorithm_confusion_hs256_signed_with_rsa_public_key(
    jwks: JwksServer, rsa: SigningKey
) -> None:
    # Given a deployment that accepts both HS256 (shared secret) and RS256 (JWKS)
    settings = settings_with(
        jwt_issuer="https://idp.example/",
        jwt_audience="spine-api",
        jwt_jwks_url=jwks.url,
        jwt_algorithms=["RS256", "HS256"],
    )
    # When an attacker uses the (public) RSA key as an HMAC secret, naming its kid
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa.kid}
    forged = hmac_token(claims(scope="admin"), rsa.public_pem(), header)
    # Then the HMAC is checked against the real secret, and fails
    assert (await refused(forged, settings)).code == "invalid_signature"
    # And with the JWK's own bytes as the "secret" too
    jwk_bytes = json.dumps(rsa.jwk()).encode()
    assert (await refused(hmac_token(claims(), jwk_bytes, header), settings)).code == (
        "invalid_signature"
    )


async def test_hs256_refused_where_only_rs256_is_allowed(idp: Settings, rsa: SigningKey) -> None:
    header = {"alg": "HS256", "kid": rsa.kid}
    forged = hmac_token(claims(), rsa.public_pem(), header)
    assert (await refused(forged, idp)).code == "unsupported_algorithm"
    # Even signed with the real secret: HS256 is simply not allowed for this issuer.
    real = pyjwt.encode(claims(), SECRET, algorithm="HS256")
    assert (await refused(real, idp)).code == "unsupported_algorithm"


async def test_spine_issuer_with_rsa_public_key_as_hmac_secret(
    idp: Settings, rsa: SigningKey
) -> None:
    # Spine's own tokens are HS256 with the secret; the public key is not the secret.
    header = {"alg": "HS256", "kid": secret_kid(SECRET)}
    forged = hmac_token(claims(iss="spine", aud="spine"), rsa.public_pem(), header)
    assert (await refused(forged, idp)).code == "invalid_signature"


async def test_expired_token_is_refused(idp: Settings, rsa: SigningKey) -> None:
    now = int(time.time())
    token = rsa.sign(claims(iat=now - 700, exp=now - 60))  # beyond the 30 s leeway
    assert (await refused(token, idp)).code == "token_expired"


async def test_not_yet_valid_token_is_refused(idp: Settings, rsa: SigningKey) -> None:
    now = int(time.time())
    token = rsa.sign(claims(nbf=now + 120))
    assert (await refused(token, idp)).code == "token_not_yet_valid"


async def test_wrong_issuer_is_refused(idp: Settings, rsa: SigningKey) -> None:
    token = rsa.sign(claims(iss="https://evil.example/"))
    assert (await refused(token, idp)).code == "invalid_issuer"


async def test_wrong_audience_is_refused(idp: Settings, rsa: SigningKey) -> None:
    assert (await refused(rsa.sign(claims(aud="other-app")), idp)).code == "invalid_audience"
    assert (await refused(rsa.sign(claims(aud=None)), idp)).code == "invalid_audience"
    # A list holding the audience is fine.
    assert (await verify_jwt(rsa.sign(claims(aud=["x", "spine-api"])), idp)).subject


async def test_tampered_payload_is_refused(idp: Settings, rsa: SigningKey) -> None:
    header, _, signature = rsa.sign(claims(scope="read")).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(claims(scope="admin")).encode())
    tampered = f"{header}.{payload.rstrip(b'=').decode()}.{signature}"
    assert (await refused(tampered, idp)).code == "invalid_signature"


async def test_unknown_kid_is_refused_after_one_refresh(
    idp: Settings, jwks: JwksServer, rsa: SigningKey
) -> None:
    # Given a warm cache whose last fetch is older than the refresh interval
    settings = settings_with(**{**idp.auth.model_dump(), "jwks_min_refresh_seconds": 0})
    await verify_jwt(rsa.sign(claims()), settings)
    assert jwks.requests == 1
    # When a token names a kid the provider does not publish
    stranger = SigningKey("rsa-unknown", "RS256", rsa.private)
    # Then the JWKS is fetched once more, and the token refused
    assert (await refused(stranger.sign(claims()), settings)).code == "unknown_key"
    assert jwks.requests == 2


@pytest.mark.parametrize(
    "token",
    [
        "abc.def.ghi",
        "eyJhbGciOiJSUzI1NiJ9.not-base64!.sig",
        unsigned_token({"sub": "x"}, {"alg": "RS256"})[:-1] + "?" * 20,
        "a..",
        "." * 2,
        "eyJ" + "A" * 9000 + ".e30.",
    ],
)
async def test_malformed_token_is_refused(idp: Settings, token: str) -> None:
    assert (await refused(token, idp)).code == "malformed_token"


async def test_header_without_alg_or_kid_is_malformed(idp: Settings, rsa: SigningKey) -> None:
    no_alg = unsigned_token(claims(), {"typ": "JWT"})
    assert (await refused(no_alg, idp)).code == "malformed_token"
    no_kid = pyjwt.encode(claims(), rsa.private, algorithm="RS256")
    assert (await refused(no_kid, idp)).code == "malformed_token"


async def test_key_of_another_type_than_the_algorithm_is_refused(
    idp: Settings, rsa: SigningKey, ec: SigningKey
) -> None:
    # An RS256 token naming the EC key's kid: the EC key never verifies RS256.
    token = pyjwt.encode(claims(), rsa.private, algorithm="RS256", headers={"kid": ec.kid})
    assert (await refused(token, idp)).code == "unsupported_algorithm"


async def test_token_without_exp_is_refused(idp: Settings, rsa: SigningKey) -> None:
    error = await refused(rsa.sign(claims(exp=None)), idp)
    assert (error.code, error.message) == ("invalid_token", "The token has no 'exp' claim.")


async def test_no_identity_provider_configured_refuses_provider_tokens(rsa: SigningKey) -> None:
    error = await refused(rsa.sign(claims()), Settings())
    assert error.code == "unsupported_algorithm"


async def test_hs256_without_a_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, jwks: JwksServer
) -> None:
    monkeypatch.delenv("SPINE_JWT_SECRET")
    settings = settings_with(jwt_algorithms=["HS256"])
    token = pyjwt.encode(claims(), SECRET, algorithm="HS256")
    assert (await refused(token, settings)).code == "unsupported_algorithm"


def test_short_secret_is_a_server_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPINE_JWT_SECRET", "too-short")
    with pytest.raises(JwtSecretError):
        issue_token(Principal(subject="a", credential="api_key"), Settings())


# --- Spine's own tokens -------------------------------------------------------------------

KEY_PRINCIPAL = Principal(
    subject="svc-billing",
    credential="api_key",
    api_key_id="5f0c7c3e-0000-4000-8000-000000000001",
    tenant="acme",
    scopes=frozenset({"chat", "admin"}),
    tier="pro",
)


async def test_issued_token_verifies_as_the_keys_principal() -> None:
    settings = Settings()
    issued = issue_token(KEY_PRINCIPAL, settings)
    assert issued.expires_in == 900
    header = pyjwt.get_unverified_header(issued.token)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": secret_kid(SECRET)}
    raw = pyjwt.decode(issued.token, SECRET, algorithms=["HS256"], audience="spine")
    assert raw["iss"] == "spine"
    assert raw["exp"] - raw["iat"] == 900
    principal = await verify_jwt(issued.token, settings)
    assert principal == Principal(
        subject="svc-billing",
        credential="jwt",
        api_key_id=KEY_PRINCIPAL.api_key_id,
        tenant="acme",
        scopes=frozenset({"chat", "admin"}),
        tier="pro",
    )


async def test_spine_tokens_pass_whatever_jwt_algorithms_says(idp: Settings) -> None:
    # jwt_algorithms governs the identity provider; Spine's tokens are always HS256.
    assert "HS256" not in idp.auth.jwt_algorithms
    assert (await verify_jwt(issue_token(KEY_PRINCIPAL, idp).token, idp)).subject


def test_issue_narrows_but_never_widens() -> None:
    settings = Settings()
    narrowed = issue_token(KEY_PRINCIPAL, settings, expires_in=60, scopes=["chat"])
    assert (narrowed.expires_in, narrowed.scopes) == (60, frozenset({"chat"}))
    with pytest.raises(InvalidRequestError) as longer:
        issue_token(KEY_PRINCIPAL, settings, expires_in=901)
    assert longer.value.param == "expires_in"
    with pytest.raises(InvalidRequestError) as wider:
        issue_token(KEY_PRINCIPAL, settings, scopes=["chat", "keys:write"])
    assert (wider.value.param, wider.value.code) == ("scopes", "invalid_scope")


def test_scope_with_whitespace_is_never_granted() -> None:
    principal = Principal(subject="s", credential="api_key", scopes=frozenset({"a admin", "b"}))
    assert issue_token(principal, Settings()).scopes == frozenset({"b"})


def test_issue_without_a_secret_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPINE_JWT_SECRET")
    with pytest.raises(ServiceUnavailableError) as caught:
        issue_token(KEY_PRINCIPAL, Settings())
    assert caught.value.code == "token_exchange_unavailable"


async def test_spine_token_after_secret_rotation_is_unknown_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = issue_token(KEY_PRINCIPAL, Settings()).token
    monkeypatch.setenv("SPINE_JWT_SECRET", SECRET[::-1])
    assert (await refused(token, Settings())).code == "unknown_key"


async def test_spine_token_for_another_audience_or_expired() -> None:
    settings = Settings()
    other = settings_with(token_audience="another-deployment")
    assert (await refused(issue_token(KEY_PRINCIPAL, other).token, settings)).code == (
        "invalid_audience"
    )
    old = issue_token(KEY_PRINCIPAL, settings, now=int(time.time()) - 2000)
    assert (await refused(old.token, settings)).code == "token_expired"


async def test_spine_token_with_tampered_scope_is_refused() -> None:
    token = issue_token(
        Principal(subject="u", credential="api_key", scopes=frozenset({"chat"})), Settings()
    ).token
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["scope"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    assert (await refused(f"{header}.{forged}.{signature}", Settings())).code == (
        "invalid_signature"
    )
