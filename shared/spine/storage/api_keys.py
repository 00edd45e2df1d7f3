"""API keys: generated here, shown once, stored as a SHA-256 digest.

A key is the configured prefix (`sk-spine-`) followed by 43 base62 characters
encoding 32 random bytes (256 bits) from `secrets`. Why SHA-256 and not
bcrypt/argon2: see migrations/0001_initial.sql.

Timing: `authenticate` looks the digest up through a unique index, so how long the
lookup takes depends on the digest, never on how much of a guessed key was right;
an attacker cannot steer a digest towards a stored one, so the timing says nothing
useful. No string comparison of secrets happens in Python.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from psycopg.rows import class_row

from spine.errors import InvalidRequestError
from spine.storage.db import Connection

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SECRET_BYTES = 32
_SECRET_CHARS = 43  # ceil(256 / log2(62)): every key has the same length
# Random characters kept in the listed prefix: enough to tell keys apart, far too
# few to matter (43 chars stay secret).
_DISPLAY_CHARS = 6
# authenticate refreshes last_used_at at most this often per key, so the hot path
# writes once per window instead of on every request.
LAST_USED_RESOLUTION = "5 minutes"

# Full statements, no string building: every value is a parameter. Each returns
# the ApiKeyRow columns, in the dataclass's order.
_INSERT = """
INSERT INTO api_keys (name, prefix, key_hash, principal, tenant, scopes, tier, expires_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
RETURNING id, name, prefix, principal, tenant, scopes, tier,
          created_at, expires_at, revoked_at, last_used_at
"""

# The lookup and the (rare) last_used_at refresh in one statement: one round trip.
# spine_authenticate_admit (migrations/0007) does the same before taking rate limits.
_AUTHENTICATE = """
WITH hit AS (
    SELECT id, name, prefix, principal, tenant, scopes, tier,
           created_at, expires_at, revoked_at, last_used_at,
           rpm, tpm, daily_budget_usd, monthly_budget_usd
    FROM api_keys
    WHERE key_hash = %(hash)s
      AND revoked_at IS NULL
      AND (expires_at IS NULL OR expires_at > now())
), touch AS (
    UPDATE api_keys SET last_used_at = now()
    WHERE id = (SELECT id FROM hit)
      AND (last_used_at IS NULL OR last_used_at < now() - %(resolution)s::interval)
)
SELECT * FROM hit
"""

_ROW_COLUMNS = """id, name, prefix, principal, tenant, scopes, tier,
       created_at, expires_at, revoked_at, last_used_at,
       rpm, tpm, daily_budget_usd, monthly_budget_usd"""

# `tenant` NULL: every tenant's keys (a global administrator).
_LIST = f"""
SELECT {_ROW_COLUMNS}
FROM api_keys
WHERE (%(all)s OR revoked_at IS NULL)
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
ORDER BY created_at, id
"""  # noqa: S608 - constant SQL

_GET = f"""
SELECT {_ROW_COLUMNS} FROM api_keys
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
"""  # noqa: S608 - constant SQL

# A None value keeps the column unless its `set_*` flag says to write it, so an
# explicit null can hand a limit back to the config default.
_UPDATE = f"""
UPDATE api_keys SET
    name = coalesce(%(name)s, name),
    rpm = CASE WHEN %(set_rpm)s THEN %(rpm)s ELSE rpm END,
    tpm = CASE WHEN %(set_tpm)s THEN %(tpm)s ELSE tpm END,
    daily_budget_usd = CASE WHEN %(set_day)s THEN %(day)s ELSE daily_budget_usd END,
    monthly_budget_usd = CASE WHEN %(set_month)s THEN %(month)s ELSE monthly_budget_usd END
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
RETURNING {_ROW_COLUMNS}
"""  # noqa: S608 - constant SQL

_REVOKE_BY_ID = f"""
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
RETURNING {_ROW_COLUMNS}
"""  # noqa: S608 - constant SQL

# Revoking twice keeps the first revocation time.
_REVOKE = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s OR key_hash = %(hash)s OR prefix = %(prefix)s
RETURNING id, name, prefix, principal, tenant, scopes, tier,
          created_at, expires_at, revoked_at, last_used_at
"""


@dataclass(frozen=True)
class ApiKeyRow:
    id: uuid.UUID
    name: str
    prefix: str
    principal: str | None
    tenant: str | None
    scopes: list[str]
    tier: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    # The key's rate-limit/budget overrides (migrations/0002_limits.sql), read by
    # `authenticate` so admission needs no second lookup; create and revoke-by-prefix
    # leave them None.
    rpm: int | None = None
    tpm: int | None = None
    daily_budget_usd: Decimal | None = None
    monthly_budget_usd: Decimal | None = None

    @property
    def display_prefix(self) -> str:
        return f"{self.prefix}…"


def generate_key(prefix: str) -> str:
    """A new key: `prefix` + 43 base62 characters (256 random bits)."""
    number = int.from_bytes(secrets.token_bytes(_SECRET_BYTES), "big")
    chars = []
    for _ in range(_SECRET_CHARS):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return prefix + "".join(chars)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


async def create_key(
    conn: Connection,
    name: str,
    *,
    prefix: str,
    principal: str | None = None,
    tenant: str | None = None,
    scopes: Sequence[str] = (),
    tier: str = "standard",
    expires_at: datetime | None = None,
) -> tuple[str, ApiKeyRow]:
    """Create a key; returns the plaintext (show it once, it is not stored) and the row.

    `prefix` is `settings.auth.api_key_prefix`.
    """
    plaintext = generate_key(prefix)
    async with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        await cur.execute(
            _INSERT,
            (
                name,
                plaintext[: len(prefix) + _DISPLAY_CHARS],
                hash_key(plaintext),
                principal,
                tenant,
                list(scopes),
                tier,
                expires_at,
            ),
        )
        row = await cur.fetchone()
    assert row is not None  # INSERT ... RETURNING always returns the row
    return plaintext, row


async def authenticate(conn: Connection, plaintext: str) -> ApiKeyRow | None:
    """The active key matching `plaintext`, or None (unknown, revoked or expired).

    One round trip: the lookup and, when stale, the last_used_at refresh run as one
    statement.
    """
    async with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        await cur.execute(
            _AUTHENTICATE,
            {"hash": hash_key(plaintext), "resolution": LAST_USED_RESOLUTION},
        )
        return await cur.fetchone()


async def list_keys(
    conn: Connection, *, include_revoked: bool = True, tenant: str | None = None
) -> list[ApiKeyRow]:
    """Every key (of `tenant`, when given), oldest first."""
    async with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        await cur.execute(_LIST, {"all": include_revoked, "tenant": tenant})
        return await cur.fetchall()


async def get_key(
    conn: Connection, key_id: uuid.UUID, *, tenant: str | None = None
) -> ApiKeyRow | None:
    """The key with this id (within `tenant`, when given), revoked or not."""
    async with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        await cur.execute(_GET, {"id": key_id, "tenant": tenant})
        return await cur.fetchone()


@dataclass(frozen=True)
class KeyChanges:
    """What an update writes. `limits` holds only the limit columns to set (rpm,
    tpm, daily_budget_usd, monthly_budget_usd); None there means the config default
    applies again, 0 means no limit."""

    name: str | None = None
    limits: dict[str, int | Decimal | None] = field(default_factory=dict)


async def update_key(
    conn: Connection, key_id: uuid.UUID, changes: KeyChanges, *, tenant: str | None = None
) -> ApiKeyRow | None:
    """Apply `changes`; None when no such key (within `tenant`)."""
    limits = changes.limits
    params = {
        "id": key_id,
        "tenant": tenant,
        "name": changes.name,
        "set_rpm": "rpm" in limits,
        "rpm": limits.get("rpm"),
        "set_tpm": "tpm" in limits,
        "tpm": limits.get("tpm"),
        "set_day": "daily_budget_usd" in limits,
        "day": limits.get("daily_budget_usd"),
        "set_month": "monthly_budget_usd" in limits,
        "month": limits.get("monthly_budget_usd"),
    }
    async with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        await cur.execute(_UPDATE, params)
        return await cur.fetchone()


async def revoke_key_by_id(
    conn: Connection, key_id: uuid.UUID, *, tenant: str | None = None
) -> ApiKeyRow | None:
    """Revoke one key by id (within `tenant`); the first revocation time is kept."""
    async with conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        await cur.execute(_REVOKE_BY_ID, {"id": key_id, "tenant": tenant})
        return await cur.fetchone()


async def revoke_key(conn: Connection, key: str) -> ApiKeyRow | None:
    """Revoke the key named by its id, its listed prefix (`sk-spine-Ab12Cd`, a
    trailing `…` is ignored) or the full key; None when nothing matches.

    Revoking a revoked key keeps its first revocation time. A prefix that matches
    several keys is refused rather than revoking them all.
    """
    params = _key_selector(key)
    async with conn.transaction(), conn.cursor(row_factory=class_row(ApiKeyRow)) as cur:
        await cur.execute(_REVOKE, params)
        rows = await cur.fetchall()
        if len(rows) > 1:
            # Rolled back by the transaction block.
            raise InvalidRequestError(
                f"'{key}' matches {len(rows)} keys; use the key id", param="key"
            )
    return rows[0] if rows else None


def _key_selector(key: str) -> dict[str, object]:
    """Parameters for _REVOKE: exactly one of id, hash, prefix is set."""
    key = key.strip().removesuffix("…").removesuffix("...")
    selector: dict[str, object] = {"id": None, "hash": None, "prefix": None}
    try:
        selector["id"] = uuid.UUID(key)
    except ValueError:
        if len(key) > _SECRET_CHARS:  # the whole key, not its listed prefix
            selector["hash"] = hash_key(key)
        else:
            selector["prefix"] = key
    return selector
