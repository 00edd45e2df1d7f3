"""The executions log: the usage ledger's rows of capability calls and prompt
executions, newest first, served by the partial index of migration 0010."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg.rows import class_row

from spine.storage.db import Connection

_SCOPE = """
(u.endpoint LIKE 'capability.%%' OR u.prompt_version_id IS NOT NULL)
AND (u.tenant = %(tenant)s OR (%(tenant)s::text IS NULL AND u.tenant IS NULL))
AND (%(principal)s::text IS NULL OR u.principal = %(principal)s)
"""

_LIST = f"""
SELECT u.request_id, u.created_at, u.endpoint, u.model, u.resolved_model, u.provider,
       u.prompt_version_id, v.version AS prompt_version, p.slug AS prompt_slug,
       u.prompt_tokens, u.completion_tokens, u.cost_usd, u.latency_ms, u.status,
       u.error_code, u.cache_hit
FROM usage_events AS u
LEFT JOIN prompt_versions AS v ON v.id = u.prompt_version_id
LEFT JOIN prompts AS p ON p.id = v.prompt_id
WHERE {_SCOPE}
  AND (%(endpoint)s::text IS NULL OR u.endpoint = %(endpoint)s)
  AND (%(model)s::text IS NULL OR u.model = %(model)s OR u.resolved_model = %(model)s)
  AND (%(status)s::text IS NULL OR u.status = %(status)s)
  AND (%(since)s::timestamptz IS NULL OR u.created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR u.created_at < %(until)s)
  AND (%(after)s::text IS NULL OR (u.created_at, u.id) < (
        SELECT u.created_at, u.id FROM usage_events AS u
        WHERE u.request_id = %(after)s AND {_SCOPE}))
ORDER BY u.created_at DESC, u.id DESC
LIMIT %(limit)s
"""  # noqa: S608  (_SCOPE is a constant; every value is a parameter)


@dataclass(frozen=True)
class ExecutionRow:
    request_id: str
    created_at: datetime
    endpoint: str
    model: str
    resolved_model: str | None
    provider: str | None
    prompt_version_id: uuid.UUID | None
    prompt_version: int | None
    prompt_slug: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    latency_ms: float | None
    status: str
    error_code: str | None
    cache_hit: bool


@dataclass(frozen=True, kw_only=True)
class ExecutionFilter:
    # Whose rows: a tenant (None: rows without one) and, unless None, one principal.
    tenant: str | None
    principal: str | None
    endpoint: str | None = None
    model: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_executions(
    conn: Connection, where: ExecutionFilter, *, limit: int, after: str | None
) -> list[ExecutionRow]:
    params = {
        "tenant": where.tenant,
        "principal": where.principal,
        "endpoint": where.endpoint,
        "model": where.model,
        "status": where.status,
        "since": where.since,
        "until": where.until,
        "after": after,
        "limit": limit,
    }
    async with conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
        await cur.execute(_LIST, params)
        return await cur.fetchall()
