"""The usage report query: sums, breakdowns, pages, and its plans at scale."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from psycopg import sql

from spine.storage.db import Connection
from spine.storage.usage import UsageRecord, delete_usage_before, record_usage
from spine.storage.usage_report import Breakdown, UsageFilter, report_query, usage_report

KEY_A = uuid.UUID("00000000-0000-0000-0000-00000000000a")
KEY_B = uuid.UUID("00000000-0000-0000-0000-00000000000b")
DAY1 = datetime(2025, 3, 1, 10, tzinfo=UTC)
ALL = [Breakdown.MODEL, Breakdown.DAY, Breakdown.KEY]


def _row(n: int, **kw: Any) -> UsageRecord:
    defaults: dict[str, Any] = {
        "request_id": f"req-{n}",
        "model": "m1",
        "endpoint": "chat.completions",
        "api_key_id": KEY_A,
        "principal": "alice",
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cost_usd": Decimal("0.001"),
        "created_at": DAY1,
    }
    return UsageRecord(**{**defaults, **kw})


async def _seed(conn: Connection) -> None:
    rows = [
        _row(1),
        _row(2, model="m2", cost_usd=Decimal("0.005"), cached_tokens=40),
        _row(3, created_at=DAY1 + timedelta(days=1), status="error", cost_usd=Decimal(0)),
        _row(4, api_key_id=KEY_B, principal="bob", cost_usd=Decimal("0.002")),
        _row(5, api_key_id=None, principal="jwt-user", created_at=DAY1 + timedelta(days=2)),
        # Outside the range: one second before it, and exactly at its (exclusive) end.
        _row(6, created_at=datetime(2025, 2, 28, 23, 59, 59, tzinfo=UTC)),
        _row(7, created_at=datetime(2025, 3, 10, tzinfo=UTC)),
    ]
    for row in rows:
        await record_usage(conn, row)


RANGE = UsageFilter(start=datetime(2025, 3, 1, tzinfo=UTC), end=datetime(2025, 3, 10, tzinfo=UTC))


async def test_totals_and_breakdowns_in_one_statement(db_conn: Connection) -> None:
    # Given seven rows, five of them in range
    await _seed(db_conn)
    # When
    report = await usage_report(db_conn, RANGE, ALL)
    # Then the totals add up the five
    totals = report.totals
    assert (totals.requests, totals.errors) == (5, 1)
    assert (totals.prompt_tokens, totals.completion_tokens, totals.cached_tokens) == (500, 50, 40)
    assert totals.cost_usd == Decimal("0.009")
    # And each breakdown is ordered (models and keys by spend, days by date)
    by_model = report.breakdowns[Breakdown.MODEL].groups
    assert [(g.key, g.sums.requests, g.sums.cost_usd) for g in by_model] == [
        ("m2", 1, Decimal("0.005")),
        ("m1", 4, Decimal("0.004")),
    ]
    by_day = report.breakdowns[Breakdown.DAY].groups
    assert [(g.key, g.sums.requests) for g in by_day] == [
        (date(2025, 3, 1), 3),
        (date(2025, 3, 2), 1),
        (date(2025, 3, 3), 1),
    ]
    by_key = report.breakdowns[Breakdown.KEY].groups
    assert [(g.key, g.sums.cost_usd) for g in by_key] == [
        (KEY_A, Decimal("0.006")),
        (KEY_B, Decimal("0.002")),
        (None, Decimal("0.001")),
    ]


async def test_filters_narrow_every_part(db_conn: Connection) -> None:
    await _seed(db_conn)
    alice = await usage_report(
        db_conn, UsageFilter(start=RANGE.start, end=RANGE.end, principal="alice"), ALL
    )
    assert alice.totals.requests == 3
    assert {g.key for g in alice.breakdowns[Breakdown.KEY].groups} == {KEY_A}
    m2 = await usage_report(
        db_conn, UsageFilter(start=RANGE.start, end=RANGE.end, model="m2"), [Breakdown.MODEL]
    )
    assert m2.totals.requests == 1
    assert list(m2.breakdowns) == [Breakdown.MODEL]
    key_b = await usage_report(
        db_conn, UsageFilter(start=RANGE.start, end=RANGE.end, api_key_id=KEY_B), []
    )
    assert (key_b.totals.requests, key_b.totals.cost_usd) == (1, Decimal("0.002"))


async def test_no_rows_gives_zero_totals(db_conn: Connection) -> None:
    report = await usage_report(db_conn, RANGE, ALL)
    assert report.totals.requests == 0
    assert report.totals.cost_usd == 0
    assert all(not page.groups and not page.has_more for page in report.breakdowns.values())


async def test_pages_of_a_breakdown(db_conn: Connection) -> None:
    # Given one row per day for five days
    for n in range(5):
        await record_usage(db_conn, _row(n, created_at=DAY1 + timedelta(days=n)))
    # When paging two at a time
    pages = [
        (await usage_report(db_conn, RANGE, [Breakdown.DAY], limit=2, offset=offset)).breakdowns[
            Breakdown.DAY
        ]
        for offset in (0, 2, 4, 6)
    ]
    # Then every day appears once, in order, and has_more marks all but the last page
    assert [[g.key.day for g in p.groups] for p in pages] == [[1, 2], [3, 4], [5], []]  # type: ignore[union-attr]
    assert [p.has_more for p in pages] == [True, True, False, False]


async def test_sql_text_in_filters_is_data(db_conn: Connection) -> None:
    await _seed(db_conn)
    hostile = "m1' OR '1'='1"
    report = await usage_report(
        db_conn, UsageFilter(start=RANGE.start, end=RANGE.end, model=hostile), ALL
    )
    assert report.totals.requests == 0
    cur = await db_conn.execute("SELECT count(*) FROM usage_events")
    assert await cur.fetchone() == (7,)


# --- retention ---------------------------------------------------------------------------


async def test_retention_deletes_only_older_rows_in_batches(db_conn: Connection) -> None:
    await _seed(db_conn)
    deleted = await delete_usage_before(db_conn, datetime(2025, 3, 2, tzinfo=UTC), batch_size=2)
    assert deleted == 4  # rows 1, 2, 4 (March 1st) and 6 (February)
    cur = await db_conn.execute("SELECT request_id FROM usage_events ORDER BY request_id")
    assert [r[0] for r in await cur.fetchall()] == ["req-3", "req-5", "req-7"]


# --- plans at scale ---------------------------------------------------------------------

ROWS = 300_000

# A year of traffic in time order (as production writes it): 500 keys, 2000
# principals, 25 models.
_GENERATE = """
INSERT INTO usage_events (request_id, created_at, api_key_id, principal, model, endpoint,
                          status, prompt_tokens, completion_tokens, cached_tokens, cost_usd)
SELECT 'gen-' || g,
       timestamptz '2025-01-01' + (g * interval '365 days') / %(rows)s,
       ('00000000-0000-0000-0000-' || lpad((g %% 500)::text, 12, '0'))::uuid,
       'user-' || (g %% 2000),
       'model-' || (g %% 25),
       'chat.completions', 'ok', 100, 20, 10, 0.0001
FROM generate_series(1, %(rows)s) AS g
"""

_KEY7 = uuid.UUID("00000000-0000-0000-0000-000000000007")
_MONTH = (datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC))
_DAY = (datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 2, tzinfo=UTC))

# What GET /v1/usage sends for each kind of caller, and the indexes it may use.
PLANS = {
    "a caller's own month": (
        UsageFilter(start=_MONTH[0], end=_MONTH[1], principal="user-42"),
        {"usage_events_principal_created_at_idx"},
    ),
    "a caller's own key": (
        UsageFilter(start=_MONTH[0], end=_MONTH[1], principal="user-7", api_key_id=_KEY7),
        {"usage_events_api_key_created_at_idx", "usage_events_principal_created_at_idx"},
    ),
    "admin: one key's month": (
        UsageFilter(start=_MONTH[0], end=_MONTH[1], api_key_id=_KEY7),
        {"usage_events_api_key_created_at_idx"},
    ),
    "admin: one model's day": (
        UsageFilter(start=_DAY[0], end=_DAY[1], model="model-3"),
        {"usage_events_model_created_at_idx"},
    ),
    "admin: everyone's day": (
        UsageFilter(start=_DAY[0], end=_DAY[1]),
        {"usage_events_created_at_brin"},
    ),
}


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


@pytest.mark.timeout(120)
async def test_report_queries_use_indexes_at_scale(db_conn: Connection) -> None:
    # Given a ledger of 300k rows with fresh statistics
    await db_conn.execute(_GENERATE, {"rows": ROWS})
    await db_conn.execute("VACUUM ANALYZE usage_events")

    problems = []
    for name, (where, indexes) in PLANS.items():
        # When the report statement for each kind of caller is planned
        query, params = report_query(where, ALL, limit=100, offset=0)
        cur = await db_conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params)
        row = await cur.fetchone()
        assert row is not None
        raw = row[0]
        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        nodes = _nodes(plan)
        # Then it reaches usage_events through its index, never a sequential scan
        scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == "usage_events"]
        if "Seq Scan" in scans or not indexes & {n.get("Index Name") for n in nodes}:
            problems.append(f"{name} (wanted {sorted(indexes)}):\n{json.dumps(plan, indent=1)}")
    assert not problems, "\n\n".join(problems)

    # And the caller's month actually runs fast (a loose bound for a slow shared box)
    query, params = report_query(PLANS["a caller's own month"][0], ALL, limit=100, offset=0)
    started = time.perf_counter()
    await (await db_conn.execute(query, params)).fetchall()
    assert time.perf_counter() - started < 1.0
