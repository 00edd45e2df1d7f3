"""Authenticate a bearer credential into a Principal: an API key or a JWT.

Kept free of heavy imports: the API-key path and the JWT path (PyJWT, the JWKS
client) are imported by the first request that needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spine.auth.api_keys import authenticate_api_key, unknown_key
from spine.auth.principal import Principal
from spine.errors import AuthenticationError
from spine.settings import Settings

if TYPE_CHECKING:
    from spine.storage.db import Database

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError(_MISSING, code="missing_api_key")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(_MISSING, code="missing_api_key")
    return token


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts (JWS compact form); whether they hold a valid token
    is for the verifier to say, so a damaged JWT is reported as such."""
    return token.count(".") == 2


async def authenticate(
    authorization: str | None, settings: Settings, database: Database
) -> Principal:
    """Spine API keys (by their prefix) are looked up; JWTs are verified; anything
    else is refused with OpenAI's "Incorrect API key" 401."""
    token = bearer_token(authorization)
    if token.startswith(settings.auth.api_key_prefix):
        return await authenticate_api_key(database, token)
    if looks_like_jwt(token):
        from spine.auth.jwt import verify_jwt  # noqa: PLC0415 - PyJWT only for callers with a JWT

        return await verify_jwt(token, settings)
    raise unknown_key(token)
