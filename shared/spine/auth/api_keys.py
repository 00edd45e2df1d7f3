"""Authenticate a bearer credential into a Principal."""

from __future__ import annotations

from spine.auth.principal import Principal
from spine.errors import AuthenticationError
from spine.settings import Settings

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


def _redacted(token: str) -> str:
    return token[:12] + "…" if len(token) > 16 else "…"


async def authenticate(authorization: str | None, settings: Settings) -> Principal:
    token = bearer_token(authorization)
    if not token.startswith(settings.auth.api_key_prefix):
        raise AuthenticationError(f"Incorrect API key provided: {_redacted(token)}.")
    from spine.storage import db
    from spine.storage.api_keys import authenticate as lookup

    conn = await db.connection()
    row = await lookup(conn, token)
    if row is None:
        raise AuthenticationError(f"Incorrect API key provided: {_redacted(token)}.")
    return Principal(
        subject=row.principal or f"key:{row.id}",
        credential="api_key",
        api_key_id=str(row.id),
        tenant=row.tenant,
        scopes=frozenset(row.scopes or ()),
        tier=row.tier or "standard",
    )
