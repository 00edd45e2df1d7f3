"""Read side of the usage ledger: totals and breakdowns over a time range.

One statement, one round trip, one scan: `GROUP BY GROUPING SETS` computes the
totals and every requested breakdown in a single pass over the matching rows, and a
window function pages each breakdown separately. The WHERE clause always bounds
`created_at` on both sides and names at most these columns, each served by an index
of migration 0001:

| filter present            | index                                   |
| ------------------------- | --------------------------------------- |
| principal (callers' own)  | usage_events_principal_created_at_idx   |
| tenant (a tenant's admin) | usage_events_tenant_created_at_idx (0008) |
| api_key_id                | usage_events_api_key_created_at_idx     |
| model                     | usage_events_model_created_at_idx       |
| none (admins, all usage)  | usage_events_created_at_brin            |

tests/storage/test_usage_report.py checks those plans on generated rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from psycopg import sql

from spine.storage.db import Connection


class Breakdown(StrEnum):
    MODEL = "model"
    DAY = "day"
    KEY = "key"


# Column of each breakdown, in the fixed order of the GROUPING(...) mask.
_COLUMN_OF = {Breakdown.MODEL: "model", Breakdown.DAY: "day", Breakdown.KEY: "api_key_id"}


def _masks(breakdowns: list[Breakdown]) -> tuple[int, dict[int, Breakdown]]:
    """GROUPING(c1, ..., cn) has bit n-1-i set when ci is NOT grouped in a row's
    set: the totals row has every bit set, breakdown i every bit but its own."""
    n = len(breakdowns)
    totals = (1 << n) - 1
    return totals, {totals & ~(1 << (n - 1 - i)): b for i, b in enumerate(breakdowns)}


@dataclass(frozen=True, kw_only=True)
class UsageFilter:
    """Rows with `start <= created_at < end` and every given column equal.

    `tenant_scoped`: only rows of `tenant` (rows without a tenant when it is None);
    otherwise rows of every tenant."""

    start: datetime
    end: datetime
    tenant_scoped: bool = False
    tenant: str | None = None
    principal: str | None = None
    api_key_id: uuid.UUID | None = None
    model: str | None = None


@dataclass(frozen=True)
class UsageSums:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class UsageGroup:
    """One row of a breakdown: `key` is the model name, the UTC date or the key id
    (None for calls made without an API key, e.g. with a JWT)."""

    key: str | date | uuid.UUID | None
    sums: UsageSums


@dataclass
class UsagePage:
    groups: list[UsageGroup] = field(default_factory=list)
    has_more: bool = False


@dataclass
class UsageReport:
    totals: UsageSums
    breakdowns: dict[Breakdown, UsagePage]


_SUMS = """
    count(*)                                  AS requests,
    count(*) FILTER (WHERE status = 'error')  AS errors,
    coalesce(sum(prompt_tokens), 0)           AS prompt_tokens,
    coalesce(sum(completion_tokens), 0)       AS completion_tokens,
    coalesce(sum(cached_tokens), 0)           AS cached_tokens,
    coalesce(sum(reasoning_tokens), 0)        AS reasoning_tokens,
    coalesce(sum(cost_usd), 0)                AS cost_usd
"""


def report_query(
    where: UsageFilter, breakdowns: list[Breakdown], *, limit: int, offset: int
) -> tuple[sql.Composed, dict[str, Any]]:
    """The statement and its parameters (public for the query-plan test).

    Every breakdown page holds rows `offset+1 .. offset+limit+1` of its ordering;
    the extra row only tells whether there is a next page.
    """
    conditions: list[sql.Composable] = [
        sql.SQL("created_at >= %(start)s"),
        sql.SQL("created_at < %(end)s"),
    ]
    params: dict[str, Any] = {
        "start": where.start,
        "end": where.end,
        "first": offset + 1,
        "last": offset + limit + 1,
    }
    if where.tenant_scoped and where.tenant is None:
        conditions.append(sql.SQL("tenant IS NULL"))
    elif where.tenant_scoped:
        conditions.append(sql.SQL("tenant = %(tenant)s"))
        params["tenant"] = where.tenant
    for column, value in (
        ("principal", where.principal),
        ("api_key_id", where.api_key_id),
        ("model", where.model),
    ):
        if value is not None:
            conditions.append(
                sql.SQL("{} = %({})s").format(sql.Identifier(column), sql.SQL(column))
            )
            params[column] = value
    breakdowns = _ordered(breakdowns)
    columns = [sql.Identifier(_COLUMN_OF[b]) for b in breakdowns]
    sets = [sql.SQL("()")] + [sql.SQL("({})").format(c) for c in columns]
    grouping = (
        sql.SQL("GROUPING({})").format(sql.SQL(", ").join(columns)) if columns else sql.SQL("0")
    )
    # A column that is not broken down is selected as NULL (it is in no grouping set).
    selected = [
        sql.Identifier(c) if any(_COLUMN_OF[b] == c for b in breakdowns) else sql.SQL("NULL")
        for c in ("model", "day", "api_key_id")
    ]
    totals, _ = _masks(breakdowns)
    query = sql.SQL(
        """
WITH grouped AS (
    SELECT {grouping} AS grouping, {model} AS model, {day} AS day,
           {api_key_id} AS api_key_id,
    {sums}
    FROM (
        SELECT model, api_key_id, (created_at AT TIME ZONE 'UTC')::date AS day, status,
               prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd
        FROM usage_events
        WHERE {conditions}
    ) AS matching
    GROUP BY GROUPING SETS ({sets})
), ranked AS (
    -- Days in calendar order; models and keys by spend, then name, so pages are stable.
    SELECT *, row_number() OVER (
        PARTITION BY grouping
        ORDER BY day ASC NULLS LAST, cost_usd DESC, model, api_key_id NULLS LAST
    ) AS position
    FROM grouped
)
SELECT grouping, model, day, api_key_id, requests, errors, prompt_tokens,
       completion_tokens, cached_tokens, reasoning_tokens, cost_usd
FROM ranked
WHERE grouping = {totals} OR position BETWEEN %(first)s AND %(last)s
ORDER BY grouping, position
"""
    ).format(
        grouping=grouping,
        model=selected[0],
        day=selected[1],
        api_key_id=selected[2],
        sums=sql.SQL(_SUMS),
        conditions=sql.SQL(" AND ").join(conditions),
        sets=sql.SQL(", ").join(sets),
        totals=sql.Literal(totals),
    )
    return query, params


async def usage_report(
    conn: Connection,
    where: UsageFilter,
    breakdowns: list[Breakdown],
    *,
    limit: int = 100,
    offset: int = 0,
) -> UsageReport:
    query, params = report_query(where, breakdowns, limit=limit, offset=offset)
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    totals = UsageSums()
    breakdowns = _ordered(breakdowns)
    pages = {b: UsagePage() for b in breakdowns}
    totals_mask, by_grouping = _masks(breakdowns)
    for grouping, model, day, key_id, *numbers in rows:
        sums = _sums(numbers)
        if grouping == totals_mask:
            totals = sums
            continue
        breakdown = by_grouping[grouping]
        page = pages[breakdown]
        if len(page.groups) == limit:
            page.has_more = True
            continue
        key = {Breakdown.MODEL: model, Breakdown.DAY: day, Breakdown.KEY: key_id}[breakdown]
        page.groups.append(UsageGroup(key=key, sums=sums))
    return UsageReport(totals=totals, breakdowns=pages)


def _ordered(breakdowns: list[Breakdown]) -> list[Breakdown]:
    return [b for b in _COLUMN_OF if b in breakdowns]


def _sums(numbers: list[Any]) -> UsageSums:
    requests, errors, prompt, completion, cached, reasoning, cost = numbers
    return UsageSums(
        requests=int(requests),
        errors=int(errors),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        cached_tokens=int(cached),
        reasoning_tokens=int(reasoning),
        cost_usd=Decimal(cost),
    )
