"""The usage ledger: one row per call, idempotent on request_id, batched retention."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from spine.storage.db import Connection
from spine.storage.usage import UsageRecord, delete_usage_before, record_usage


async def test_record_usage_round_trip(db_conn: Connection) -> None:
    # Given a full record
    key_id = uuid.uuid4()
    record = UsageRecord(
        request_id="req-1",
        api_key_id=str(key_id),
        principal="user-1",
        tenant="acme",
        model="gpt-4o-mini",
        resolved_model="openai/gpt-4o-mini",
        provider="openai",
        deployment="primary",
        endpoint="chat.completions",
        status="error",
        http_status=429,
        error_code="rate_limit_exceeded",
        prompt_tokens=120,
        completion_tokens=30,
        cached_tokens=100,
        reasoning_tokens=5,
        cost_usd=Decimal("0.000123456"),
        latency_ms=812.375,
        cache_hit=True,
        prompt_version_id=uuid.uuid4(),
        metadata={"profile": "fast", "n": 2},
    )

    # When it is recorded
    await record_usage(conn=db_conn, record=record)

    # Then every field reads back exactly (cost to the nano-dollar)
    cur = await db_conn.execute(
        "SELECT request_id, api_key_id, principal, tenant, model, resolved_model, provider,"
        " deployment, endpoint, status, http_status, error_code, prompt_tokens,"
        " completion_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms,"
        " cache_hit, prompt_version_id, metadata, created_at FROM usage_events"
    )
    rows = await cur.fetchall()
    assert len(rows) == 1
    row = rows[0]
    assert row[:20] == (
        "req-1",
        key_id,
        "user-1",
        "acme",
        "gpt-4o-mini",
        "openai/gpt-4o-mini",
        "openai",
        "primary",
        "chat.completions",
        "error",
        429,
        "rate_limit_exceeded",
        120,
        30,
        100,
        5,
        Decimal("0.000123456"),
        812.375,
        True,
        record.prompt_version_id,
    )
    assert row[20] == {"profile": "fast", "n": 2}
    assert abs(row[21] - datetime.now(UTC)) < timedelta(minutes=1)


async def test_same_request_id_is_recorded_once(db_conn: Connection) -> None:
    record = UsageRecord(request_id="req-dup", model="m", endpoint="chat.completions")
    await record_usage(db_conn, record)
    await record_usage(db_conn, record)  # a retried write

    cur = await db_conn.execute("SELECT count(*) FROM usage_events")
    assert await cur.fetchone() == (1,)


async def test_minimal_record_gets_defaults(db_conn: Connection) -> None:
    await record_usage(db_conn, UsageRecord(request_id="r", model="m", endpoint="completions"))
    cur = await db_conn.execute(
        "SELECT status, prompt_tokens, cost_usd, cache_hit, api_key_id, metadata FROM usage_events"
    )
    assert await cur.fetchone() == ("ok", 0, Decimal("0E-9"), False, None, {})


async def test_delete_usage_before_deletes_only_old_rows_in_batches(
    db_conn: Connection,
) -> None:
    now = datetime.now(UTC)
    for i in range(7):
        await record_usage(
            db_conn,
            UsageRecord(
                request_id=f"old-{i}",
                model="m",
                endpoint="chat.completions",
                created_at=now - timedelta(days=40),
            ),
        )
    await record_usage(db_conn, UsageRecord(request_id="new", model="m", endpoint="e"))

    deleted = await delete_usage_before(db_conn, now - timedelta(days=30), batch_size=3)

    assert deleted == 7
    cur = await db_conn.execute("SELECT request_id FROM usage_events")
    assert await cur.fetchall() == [("new",)]
