"""The usage/cost ledger: one `usage_events` row per provider call.

Writes are one INSERT (one round trip) and idempotent on `request_id`, so a retried
write after a lost connection never bills a call twice. Indexes and the retention
policy are described in migrations/0001_initial.sql.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from psycopg.types.json import Jsonb

from spine.storage.db import Connection

_INSERT = """
INSERT INTO usage_events (
    request_id, created_at, api_key_id, principal, tenant, model, resolved_model,
    provider, deployment, endpoint, status, http_status, error_code, prompt_tokens,
    completion_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms, cache_hit,
    prompt_version_id, metadata
) VALUES (
    %(request_id)s, coalesce(%(created_at)s, now()), %(api_key_id)s, %(principal)s,
    %(tenant)s, %(model)s, %(resolved_model)s, %(provider)s, %(deployment)s,
    %(endpoint)s, %(status)s, %(http_status)s, %(error_code)s, %(prompt_tokens)s,
    %(completion_tokens)s, %(cached_tokens)s, %(reasoning_tokens)s, %(cost_usd)s,
    %(latency_ms)s, %(cache_hit)s, %(prompt_version_id)s, %(metadata)s
)
ON CONFLICT (request_id) DO NOTHING
"""

# Retention deletes a bounded batch per statement: short transactions, short locks,
# and autovacuum keeps up, instead of one DELETE of millions of rows.
_DELETE_BATCH = """
DELETE FROM usage_events WHERE id IN (
    SELECT id FROM usage_events WHERE created_at < %(cutoff)s LIMIT %(limit)s
)
"""


@dataclass(frozen=True, kw_only=True)
class UsageRecord:
    request_id: str
    model: str  # the model id the client asked for
    endpoint: str  # 'chat.completions' | 'completions' | 'embeddings' | ...
    status: Literal["ok", "error"] = "ok"
    api_key_id: str | uuid.UUID | None = None
    principal: str | None = None
    tenant: str | None = None
    resolved_model: str | None = None  # the registry model that served the call
    provider: str | None = None
    deployment: str | None = None
    http_status: int | None = None
    error_code: str | None = None
    prompt_tokens: int = 0  # includes cached_tokens (OpenAI's convention)
    completion_tokens: int = 0  # includes reasoning_tokens
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float | None = None
    cache_hit: bool = False
    prompt_version_id: str | uuid.UUID | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None  # None: the database's now()


# For statements that write the row together with other changes in one round trip
# (spine.storage.limits.settle_and_record_usage).
INSERT_USAGE = _INSERT


async def record_usage(conn: Connection, record: UsageRecord) -> None:
    """Insert one ledger row; a second row with the same request_id is ignored."""
    await conn.execute(_INSERT, usage_params(record))


def usage_params(record: UsageRecord) -> dict[str, Any]:
    """The parameters of INSERT_USAGE for `record`."""
    return {
        "request_id": record.request_id,
        "created_at": record.created_at,
        "api_key_id": _uuid_or_none(record.api_key_id),
        "principal": record.principal,
        "tenant": record.tenant,
        "model": record.model,
        "resolved_model": record.resolved_model,
        "provider": record.provider,
        "deployment": record.deployment,
        "endpoint": record.endpoint,
        "status": record.status,
        "http_status": record.http_status,
        "error_code": record.error_code,
        "prompt_tokens": record.prompt_tokens or 0,
        "completion_tokens": record.completion_tokens or 0,
        "cached_tokens": record.cached_tokens or 0,
        "reasoning_tokens": record.reasoning_tokens or 0,
        "cost_usd": record.cost_usd,
        "latency_ms": record.latency_ms,
        "cache_hit": record.cache_hit,
        "prompt_version_id": _uuid_or_none(record.prompt_version_id),
        "metadata": Jsonb(dict(record.metadata)),
    }


async def delete_usage_before(conn: Connection, cutoff: datetime, *, batch_size: int = 5000) -> int:
    """Retention: delete rows created before `cutoff`, `batch_size` rows per
    statement (each its own transaction in autocommit); the number deleted."""
    total = 0
    while True:
        cur = await conn.execute(_DELETE_BATCH, {"cutoff": cutoff, "limit": batch_size})
        total += cur.rowcount
        if cur.rowcount < batch_size:
            return total


async def count_usage_before(conn: Connection, cutoff: datetime) -> int:
    """How many rows `delete_usage_before(cutoff)` would delete (BRIN-served)."""
    cur = await conn.execute(
        "SELECT count(*) FROM usage_events WHERE created_at < %(cutoff)s", {"cutoff": cutoff}
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def _uuid_or_none(value: str | uuid.UUID | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(value)
