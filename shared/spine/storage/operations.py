"""Reads behind the admin app's operations views: latency percentiles and error rates
from the usage ledger, and the deployments cooling down.

The latency read bounds `created_at` like every usage read (the BRIN index of
migration 0001) and computes the per-provider, per-model and overall figures in one
pass with GROUPING SETS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from spine.storage.db import Connection

_LATENCY = """
SELECT GROUPING(provider, model) AS level, provider, model,
       count(*) AS requests,
       count(*) FILTER (WHERE status = 'error') AS errors,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_ms) AS p90,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99
FROM usage_events
WHERE created_at >= %(start)s AND created_at < %(end)s
GROUP BY GROUPING SETS ((provider), (model), ())
ORDER BY level, requests DESC, provider, model
"""

_COOLDOWNS = """
SELECT model_id, deployment, failures, window_started, cooled_until, last_error,
       coalesce(cooled_until > now(), false) AS cooling
FROM deployment_cooldowns
ORDER BY model_id, deployment
"""

# GROUPING(provider, model): 1 = grouped by provider, 2 = by model, 3 = everything.
BY_PROVIDER, BY_MODEL, OVERALL = 1, 2, 3


@dataclass(frozen=True)
class LatencyRow:
    level: int
    provider: str | None
    model: str | None
    requests: int
    errors: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class CooldownRow:
    model_id: str
    deployment: str
    failures: int
    window_started: datetime
    cooled_until: datetime | None
    last_error: str | None
    cooling: bool


async def latency(conn: Connection, start: datetime, end: datetime) -> list[LatencyRow]:
    cur = await conn.execute(_LATENCY, {"start": start, "end": end})
    return [LatencyRow(*row) for row in await cur.fetchall()]


async def cooldowns(conn: Connection) -> list[CooldownRow]:
    cur = await conn.execute(_COOLDOWNS)
    return [CooldownRow(*row) for row in await cur.fetchall()]
