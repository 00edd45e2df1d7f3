"""Key administration on behalf of a principal: who may see and change which keys.

A manager bound to a tenant sees only that tenant's keys (another tenant's key is a
404, as if it did not exist) and creates keys only in it. A key never gets a scope
its creator does not hold, so `keys:write` cannot mint an `admin` key. Storage is
`spine.storage.api_keys`; HTTP shapes are the route's.

Whom a new key acts as (its principal), since whoever a key acts as owns that
principal's sessions, prompts, usage and budgets:
- by default, itself: `key:<id>`, a principal no one else has;
- its creator, when `principal` is the creator's own subject (a personal key);
- anyone else only with IMPERSONATE_SCOPE, which only an `admin` can grant (so
  `keys:write` alone can never mint a key that reads a user's history).
`key:` subjects belong to keys: no key may be given one, and identity-provider
tokens naming one are refused (`spine.auth.claims`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from spine.auth.claims import KEY_SUBJECT_PREFIX
from spine.auth.principal import Principal
from spine.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from spine.schemas.keys import KeyCreate, KeyUpdate
from spine.settings import Settings
from spine.storage import api_keys
from spine.storage.api_keys import ApiKeyRow, KeyChanges
from spine.storage.db import Database

# Minting a key that acts as another principal of the tenant (impersonation).
IMPERSONATE_SCOPE = "keys:impersonate"


async def create(
    database: Database, principal: Principal, body: KeyCreate, settings: Settings
) -> tuple[str, ApiKeyRow]:
    """A new key (plaintext, row); its limits are set in the same transaction."""
    tenant = _tenant_for_new_key(principal, body.tenant)
    _check_key_principal(principal, body.principal)
    for scope in body.scopes:
        if not principal.has_scope(scope):
            raise PermissionDeniedError(
                f"You cannot grant the scope '{scope}': your credential does not hold it.",
                param="scopes",
                code="scope_not_held",
            )
    expires_at = _expiry(body.expires_at)

    async with database.transaction() as conn:
        plaintext, row = await api_keys.create_key(
            conn,
            body.name,
            prefix=settings.auth.api_key_prefix,
            principal=body.principal,
            tenant=tenant,
            scopes=body.scopes,
            tier=body.tier,
            expires_at=expires_at,
        )
        updated = await api_keys.update_key(
            conn, row.id, KeyChanges(limits=body.limits.changes() if body.limits else {})
        )
    assert updated is not None  # created in this transaction
    return plaintext, updated


async def list_keys(
    database: Database, principal: Principal, *, include_revoked: bool
) -> list[ApiKeyRow]:

    conn = await database.connection()
    return await api_keys.list_keys(conn, include_revoked=include_revoked, tenant=principal.tenant)


async def get(database: Database, principal: Principal, key_id: str) -> ApiKeyRow:

    conn = await database.connection()
    return _found(await api_keys.get_key(conn, _uuid(key_id), tenant=principal.tenant), key_id)


async def update(
    database: Database, principal: Principal, key_id: str, body: KeyUpdate
) -> ApiKeyRow:

    changes = KeyChanges(name=body.name, limits=body.limits.changes() if body.limits else {})
    conn = await database.connection()
    row = await api_keys.update_key(conn, _uuid(key_id), changes, tenant=principal.tenant)
    return _found(row, key_id)


async def revoke(database: Database, principal: Principal, key_id: str) -> ApiKeyRow:

    conn = await database.connection()
    row = await api_keys.revoke_key_by_id(conn, _uuid(key_id), tenant=principal.tenant)
    return _found(row, key_id)


def _tenant_for_new_key(principal: Principal, requested: str | None) -> str | None:
    if principal.tenant is None:
        return requested
    if requested is not None and requested != principal.tenant:
        raise PermissionDeniedError(
            f"You can create keys only in your own tenant '{principal.tenant}'.",
            param="tenant",
            code="tenant_mismatch",
        )
    return principal.tenant


def _check_key_principal(creator: Principal, requested: str | None) -> None:
    if requested is None or requested == creator.subject:
        return
    if requested.startswith(KEY_SUBJECT_PREFIX):
        raise InvalidRequestError(
            f"'principal' may not start with '{KEY_SUBJECT_PREFIX}': those subjects belong "
            "to keys without a principal.",
            param="principal",
            code="reserved_principal",
        )
    if not creator.has_scope(IMPERSONATE_SCOPE):
        raise PermissionDeniedError(
            f"A key that acts as another principal ('{requested}') needs the "
            f"'{IMPERSONATE_SCOPE}' scope; leave 'principal' out for a key of its own, or "
            "name yourself.",
            param="principal",
            code="impersonation_not_allowed",
        )


def _expiry(expires_at: int | None) -> datetime | None:
    if expires_at is None:
        return None
    when = datetime.fromtimestamp(expires_at, UTC)
    if when <= datetime.now(UTC):
        raise InvalidRequestError("'expires_at' must be in the future.", param="expires_at")
    return when


def _uuid(key_id: str) -> uuid.UUID:
    """Ids are UUIDs; anything else names no key (404, like a missing one)."""
    try:
        return uuid.UUID(key_id)
    except ValueError:
        raise _not_found(key_id) from None


def _found(row: ApiKeyRow | None, key_id: str) -> ApiKeyRow:
    if row is None:
        raise _not_found(key_id)
    return row


def _not_found(key_id: str) -> NotFoundError:
    return NotFoundError(f"No API key with id '{key_id[:64]}'.", param="key_id")
