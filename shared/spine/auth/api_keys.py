"""Authenticate a Spine API key into a Principal (one indexed lookup)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spine.auth.principal import KeyLimits, Principal
from spine.errors import AuthenticationError
from spine.storage.api_keys import authenticate as lookup

if TYPE_CHECKING:
    from spine.storage.api_keys import ApiKeyRow
    from spine.storage.db import Connection, Database


async def authenticate_api_key(database: Database, token: str) -> Principal:
    """The principal of an active key; 401 for an unknown, revoked or expired one."""

    async def find(conn: Connection) -> ApiKeyRow | None:
        return await lookup(conn, token)

    # A lookup: safe to run again on a fresh connection when the first is dead.
    row = await database.run(find)
    if row is None:
        raise unknown_key(token)
    return principal_for_key(row)


def redacted(token: str) -> str:
    """Enough of a credential to recognise it in an error, never enough to use it."""
    return token[:12] + "…" if len(token) > 16 else "…"


def unknown_key(token: str) -> AuthenticationError:
    return AuthenticationError(f"Incorrect API key provided: {redacted(token)}.")


def principal_for_key(row: ApiKeyRow) -> Principal:
    return Principal(
        subject=row.principal or f"key:{row.id}",
        credential="api_key",
        api_key_id=str(row.id),
        tenant=row.tenant,
        scopes=frozenset(row.scopes or ()),
        tier=row.tier or "standard",
        limits=KeyLimits(row.rpm, row.tpm, row.daily_budget_usd, row.monthly_budget_usd),
    )
