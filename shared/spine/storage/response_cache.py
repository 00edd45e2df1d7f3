"""The response cache table: lookups by key, upserts, batched expiry.

Times come from the database clock (`now()`), so function instances with skewed
clocks agree on what has expired. See migrations/0006_response_cache.sql.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from spine.storage.db import Connection

# A row is served while the writer's TTL (expires_at) and the reader's TTL (its
# model's or profile's cache_ttl, counted from created_at) both hold: a reader
# configured with a shorter TTL never gets an answer older than it allows.
_LOOKUP = """
SELECT model_id, provider, deployment, request_id, response, created_at
FROM response_cache
WHERE cache_key = %(key)s AND scope = %(scope)s
  AND expires_at > now()
  AND created_at > now() - make_interval(secs => %(ttl)s)
"""

_STORE = """
INSERT INTO response_cache AS c (cache_key, scope, endpoint, model_id, provider, deployment,
                                 request_id, response, created_at, expires_at)
VALUES (%(key)s, %(scope)s, %(endpoint)s, %(model_id)s, %(provider)s, %(deployment)s,
        %(request_id)s, %(response)s, now(), now() + make_interval(secs => %(ttl)s))
ON CONFLICT (cache_key) DO UPDATE SET
    scope = EXCLUDED.scope,
    endpoint = EXCLUDED.endpoint,
    model_id = EXCLUDED.model_id,
    provider = EXCLUDED.provider,
    deployment = EXCLUDED.deployment,
    request_id = EXCLUDED.request_id,
    response = EXCLUDED.response,
    created_at = EXCLUDED.created_at,
    expires_at = EXCLUDED.expires_at
"""

# A bounded batch per statement: short transactions and locks (as the usage ledger's
# retention does), instead of one DELETE of everything that expired.
_DELETE_EXPIRED = """
DELETE FROM response_cache WHERE cache_key IN (
    SELECT cache_key FROM response_cache WHERE expires_at <= now() LIMIT %(limit)s
)
"""


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    key: bytes  # SHA-256 of the scope and the normalized request
    scope: str  # 'tenant:<id>' or 'subject:<id>'
    endpoint: str
    model_id: str
    provider: str
    deployment: str
    request_id: str
    response: Mapping[str, Any]


@dataclass(frozen=True)
class CachedRow:
    model_id: str
    provider: str
    deployment: str
    request_id: str
    response: dict[str, Any]
    created_at: datetime


async def lookup(conn: Connection, key: bytes, scope: str, *, ttl: int) -> CachedRow | None:
    """The live row for `key` in `scope` no older than `ttl` seconds, if any."""
    cursor = await conn.execute(_LOOKUP, {"key": key, "scope": scope, "ttl": ttl})
    row = await cursor.fetchone()
    if row is None:
        return None
    model_id, provider, deployment, request_id, response, created_at = row
    return CachedRow(
        str(model_id), str(provider), str(deployment), str(request_id), dict(response), created_at
    )


async def store(conn: Connection, entry: CacheEntry, *, ttl: int) -> None:
    """Insert or replace the row for `entry.key`, live for `ttl` seconds."""
    await conn.execute(
        _STORE,
        {
            "key": entry.key,
            "scope": entry.scope,
            "endpoint": entry.endpoint,
            "model_id": entry.model_id,
            "provider": entry.provider,
            "deployment": entry.deployment,
            "request_id": entry.request_id,
            "response": Jsonb(dict(entry.response)),
            "ttl": ttl,
        },
    )


async def delete_expired(conn: Connection, batch: int = 5000) -> int:
    """Delete expired rows, `batch` rows per statement (each its own transaction in
    autocommit), until none is left; the number deleted."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    total = 0
    while True:
        cursor = await conn.execute(_DELETE_EXPIRED, {"limit": batch})
        total += cursor.rowcount
        if cursor.rowcount < batch:
            return total
