"""Rate-limit and budget counters in Postgres (migrations/0002_limits.sql).

`admit` takes from several counters all or none in one round trip (the
`spine_admit` function); `settle` corrects reserved amounts to the real usage;
`delete_expired` trims old windows in batches. The limit logic (which counters a
request touches) lives in `spine.limits`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from psycopg.rows import dict_row

from spine.storage.api_keys import LAST_USED_RESOLUTION, ApiKeyRow, hash_key
from spine.storage.db import Connection
from spine.storage.usage import INSERT_USAGE, UsageRecord, usage_params

Metric = str  # 'requests' | 'tokens' | 'usd_day' | 'usd_month'

_ADMIT = """
SELECT counter_index, counter_limit, counter_used, counter_window_start,
       counter_window_end, admitted, now()
FROM spine_admit(%(key)s, %(subjects)s, %(metrics)s, %(windows)s, %(amounts)s,
                 %(limits)s, %(overrides)s, %(cleanup)s)
"""

# One statement for every counter of a request; a counter never goes below zero
# (a reservation settled after its window was deleted updates nothing).
_SETTLE = """
UPDATE rate_counters AS c SET used = greatest(c.used + d.delta, 0)
FROM unnest(%(subjects)s::text[], %(metrics)s::text[], %(starts)s::timestamptz[],
            %(deltas)s::numeric[]) AS d(subject, metric, window_start, delta)
WHERE c.subject = d.subject AND c.metric = d.metric AND c.window_start = d.window_start
"""

_DELETE_EXPIRED = """
DELETE FROM rate_counters
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM rate_counters
    WHERE window_end < now() - %(grace)s::interval
    LIMIT %(batch)s))
"""

# The key lookup and the admission in one round trip (migrations/0007): the
# counters of the key's principal carry PRINCIPAL_SUBJECT, replaced there by the
# key's subject (its owner, or "key:<id>"; the same as spine.auth.api_keys). An
# unknown key returns no row and takes nothing; a known one returns one row per
# limited counter, or one row with NULL counter columns when nothing is limited.
PRINCIPAL_SUBJECT = "principal:?"
_AUTHENTICATE_AND_ADMIT = """
SELECT * FROM spine_authenticate_admit(
    %(hash)s, %(resolution)s::interval, %(placeholder)s, %(subjects)s, %(metrics)s,
    %(windows)s, %(amounts)s, %(limits)s, %(overrides)s, %(cleanup)s, %(limited)s)
"""

# Windows that ended this long ago are deleted; settlement of a request that
# straddled a window boundary still finds its row.
EXPIRY_GRACE = "1 hour"


def principal_counter_subject(tenant: str | None, subject: str) -> str:
    """The counter key of a principal: its tenant and subject, length-prefixed so no
    two (tenant, subject) pairs share a key (migrations/0008's spine_principal_subject
    builds the same string)."""
    scope = tenant or ""
    return f"principal:{len(scope)}:{scope}:{subject}"


@dataclass(frozen=True)
class CounterRequest:
    subject: str
    metric: Metric
    window: str  # 'minute' | 'day' | 'month'
    amount: Decimal
    limit: Decimal | None  # default; None or 0: unlimited unless the key overrides
    key_override: bool = False


@dataclass(frozen=True)
class CounterState:
    request: CounterRequest
    limit: Decimal
    used: Decimal
    window_start: datetime
    window_end: datetime
    admitted: bool
    now: datetime


async def admit(
    conn: Connection,
    counters: Sequence[CounterRequest],
    *,
    api_key_id: uuid.UUID | str | None,
    cleanup: bool = False,
) -> list[CounterState]:
    """Take every counter's amount, all or none. Returns the limited counters'
    states after the take; on refusal, only the refusing counter (admitted=False)."""
    ordered = _lock_order(counters)
    params = {
        "key": str(api_key_id) if api_key_id is not None else None,
        **_counter_params(ordered, cleanup),
    }
    cur = await conn.execute(_ADMIT, params)
    rows = await cur.fetchall()
    return [
        CounterState(
            request=ordered[index - 1],
            limit=limit,
            used=used,
            window_start=start,
            window_end=end,
            admitted=admitted,
            now=now,
        )
        for index, limit, used, start, end, admitted, now in rows
    ]


async def authenticate_and_admit(
    conn: Connection,
    plaintext: str,
    counters: Sequence[CounterRequest],
    *,
    cleanup: bool = False,
) -> tuple[ApiKeyRow | None, list[CounterState]]:
    """`spine.storage.api_keys.authenticate` and `admit` in one round trip. Counters
    whose subject is PRINCIPAL_SUBJECT are the key principal's; the states returned
    carry the real subject. (None, []) for an unknown, revoked or expired key."""
    # 'model:…' sorts before 'principal:…' whatever the principal: the lock order
    # that `admit` keeps holds after the substitution.
    ordered = _lock_order(counters)
    params = {
        "hash": hash_key(plaintext),
        "resolution": LAST_USED_RESOLUTION,
        "placeholder": PRINCIPAL_SUBJECT,
        "limited": any(c.limit is not None for c in ordered),
        **_counter_params(ordered, cleanup),
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_AUTHENTICATE_AND_ADMIT, params)
        rows = await cur.fetchall()
    if not rows:
        return None, []
    first = rows[0]
    key = ApiKeyRow(**{name: first[name] for name in ApiKeyRow.__dataclass_fields__})
    subject = principal_counter_subject(key.tenant, key.principal or f"key:{key.id}")
    states = [
        CounterState(
            request=_with_subject(ordered[row["counter_index"] - 1], subject),
            limit=row["counter_limit"],
            used=row["counter_used"],
            window_start=row["counter_window_start"],
            window_end=row["counter_window_end"],
            admitted=row["admitted"],
            now=row["now"],
        )
        for row in rows
        if row["counter_index"] is not None
    ]
    return key, states


def _lock_order(counters: Sequence[CounterRequest]) -> list[CounterRequest]:
    """Counters sorted by (subject, metric): two requests never wait on each other's
    rows in opposite orders (no deadlocks)."""
    return sorted(counters, key=lambda c: (c.subject, c.metric))


def _counter_params(ordered: Sequence[CounterRequest], cleanup: bool) -> dict[str, object]:
    """spine_admit's array arguments, one element per counter."""
    return {
        "subjects": [c.subject for c in ordered],
        "metrics": [c.metric for c in ordered],
        "windows": [c.window for c in ordered],
        "amounts": [c.amount for c in ordered],
        "limits": [c.limit for c in ordered],
        "overrides": [c.key_override for c in ordered],
        "cleanup": cleanup,
    }


def _with_subject(counter: CounterRequest, subject: str) -> CounterRequest:
    if counter.subject != PRINCIPAL_SUBJECT:
        return counter
    return replace(counter, subject=subject)


@dataclass(frozen=True)
class Adjustment:
    subject: str
    metric: Metric
    window_start: datetime
    delta: Decimal


async def settle(conn: Connection, adjustments: Sequence[Adjustment]) -> None:
    """Add each delta (negative: give back) to its counter, in one statement."""
    live = [a for a in adjustments if a.delta != 0]
    if not live:
        return
    await conn.execute(_SETTLE, _adjustment_params(live))


async def delete_expired(conn: Connection, *, batch: int = 1000) -> int:
    """Delete up to `batch` windows that ended over EXPIRY_GRACE ago; how many."""
    cur = await conn.execute(_DELETE_EXPIRED, {"grace": EXPIRY_GRACE, "batch": batch})
    return cur.rowcount


# The settlement and the ledger row in one statement: one round trip after the call,
# and the two agree (both written or neither). Idempotent: the counters move only
# when the row is new, so a write retried after a lost connection, or replayed from
# the spool (spine.ledger.spool), never bills or counts a request twice. Returns 1
# when the row was written now, 0 when it was there already.
_RECORD_AND_SETTLE = f"""
WITH recorded AS ({INSERT_USAGE} RETURNING 1),
settled AS (
    UPDATE rate_counters AS c SET used = greatest(c.used + d.delta, 0)
    FROM unnest(%(subjects)s::text[], %(metrics)s::text[], %(starts)s::timestamptz[],
                %(deltas)s::numeric[]) AS d(subject, metric, window_start, delta)
    WHERE c.subject = d.subject AND c.metric = d.metric
      AND c.window_start = d.window_start AND EXISTS (SELECT 1 FROM recorded)
)
SELECT count(*) FROM recorded
"""  # noqa: S608 - constant SQL


async def settle_and_record_usage(
    conn: Connection, adjustments: Sequence[Adjustment], record: UsageRecord
) -> bool:
    """Write the ledger row and, if it is new, apply `adjustments`: one statement.
    True when the row was written by this call (False: it was there already)."""
    live = [a for a in adjustments if a.delta != 0]
    params = {**usage_params(record), **_adjustment_params(live)}
    cur = await conn.execute(_RECORD_AND_SETTLE, params)
    row = await cur.fetchone()
    return bool(row and row[0])


async def settle_and_record_usages(
    conn: Connection, items: Sequence[tuple[Sequence[Adjustment], UsageRecord]]
) -> None:
    """`settle_and_record_usage` for several rows, sent together (one round trip in
    psycopg's pipeline mode); as idempotent, row by row."""
    params = [
        {**usage_params(record), **_adjustment_params([a for a in adjustments if a.delta != 0])}
        for adjustments, record in items
    ]
    async with conn.cursor() as cur:
        await cur.executemany(_RECORD_AND_SETTLE, params)


def _adjustment_params(live: Sequence[Adjustment]) -> dict[str, object]:
    """_SETTLE's array arguments, one element per adjustment."""
    return {
        "subjects": [a.subject for a in live],
        "metrics": [a.metric for a in live],
        "starts": [a.window_start for a in live],
        "deltas": [a.delta for a in live],
    }
