"""A native batch's results against a real Postgres: written twice (a poll run
again after a crash), each answered line has one usage row and is counted against
the owner's budget once, and the estimate held since submission is given back once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

from spine.batches.native.results import ResultWriter
from spine.errors import error_body
from spine.providers.native_batch import LineResult
from spine.registry.schema import Pricing
from spine.schemas.openai import Usage
from spine.storage import batches as store
from spine.storage import native_batches as native_store
from spine.storage.db import Connection, Database
from spine.storage.limits import CounterRequest, admit
from spine.storage.native_batches import BudgetHold
from spine.storage.owner import Owner
from tests.fixtures.batches import insert_batch

ESTIMATE = Decimal("0.01")
RESULTS = [
    LineResult(
        "ok-1",
        "succeeded",
        200,
        {"object": "chat.completion", "model": "gpt-4o-mini", "choices": []},
        Usage.of(1000, 1000),
    ),
    LineResult(
        "refused-1",
        "errored",
        400,
        error_body("bad", "invalid_request_error"),
        error_code="invalid_value",
    ),
    LineResult("late-1", "expired"),
]


async def provider_results() -> AsyncIterator[LineResult]:
    for result in RESULTS:
        yield result


async def budget_used(conn: Connection, hold: BudgetHold) -> Decimal:
    cur = await conn.execute(
        "SELECT used FROM rate_counters WHERE subject = %s AND metric = %s AND window_start = %s",
        (hold.subject, hold.metric, hold.window_start),
    )
    row = await cur.fetchone()
    assert row is not None
    return Decimal(row[0])


async def test_results_written_twice_bill_and_count_each_line_once(
    db_conn: Connection,
) -> None:
    # Given a native batch submitted with its estimate held on a daily budget
    batch = await insert_batch(db_conn, Owner("acme", "alice"), total=3, batch_id="batch_native1")
    await native_store.insert_pending(
        db_conn,
        batch_id=batch.id,
        provider="openai",
        model_id="gpt",
        requested_model="gpt-alias",
    )
    [state] = await admit(
        db_conn,
        [CounterRequest("principal:acme/alice", "usd_day", "day", ESTIMATE, Decimal(100))],
        api_key_id=None,
    )
    hold = BudgetHold(state.request.subject, "usd_day", state.window_start)
    await native_store.submitted(
        db_conn,
        batch.id,
        provider_batch_id="batch_provider1",
        provider_status="in_progress",
        estimate_usd=ESTIMATE,
        holds=[hold],
    )
    native = await native_store.get(db_conn, batch.id)
    assert native is not None and native.holds == [hold]
    started = await store.get_batch(db_conn, None, batch.id)
    assert started is not None and started.status == "in_progress"
    pricing = Pricing(input=1.0, output=2.0).discounted(0.5)

    # When its results are written twice (the first poll died before closing it)
    for _ in range(2):
        writer = ResultWriter(Database(), batch, native, "default", pricing)
        output = [line async for line in writer.output_lines(provider_results())]
        errors = [line async for line in writer.error_lines(provider_results(), ["never-1"])]
        assert (len(output), len(errors), writer.completed, writer.failed) == (1, 3, 1, 1)
    assert b'"model":"gpt-alias"' in output[0]
    assert b'"batch_expired"' in errors[1]
    # (a custom_id the provider never named, in a batch neither expired nor cancelled)
    assert b'"never-1"' in errors[2] and b'"batch_failed"' in errors[2]

    # Then one row per answered line, the success at the batch price
    cur = await db_conn.execute(
        "SELECT request_id, status, cost_usd, model, metadata FROM usage_events"
        " WHERE request_id LIKE 'batch_native1:%' ORDER BY request_id"
    )
    rows = await cur.fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("batch_native1:ok-1", "ok"),
        ("batch_native1:refused-1", "error"),
    ]
    line_cost = Decimal("0.0015")  # (1000 x 0.5 + 1000 x 1.0) / 1e6
    assert Decimal(rows[0][2]) == line_cost and Decimal(rows[1][2]) == 0
    assert rows[0][3] == "gpt-alias"
    assert rows[0][4] == {"batch_id": "batch_native1", "native_batch": "batch_provider1"}
    # And the budget holds the estimate plus the line's cost, once
    assert await budget_used(db_conn, hold) == ESTIMATE + line_cost

    # When the batch is closed, twice
    assert await store.to_finalizing(db_conn, batch.id, expired=True)
    release = [hold.adjustment(-ESTIMATE)]
    closes = [
        await native_store.close(
            db_conn,
            batch.id,
            completed=1,
            failed=1,
            output_file_id="file-out",
            error_file_id="file-err",
            release=release,
        )
        for _ in range(2)
    ]
    # Then it closed once: expired, its counts and files set, the estimate given back
    assert closes == [True, False]
    closed = await store.get_batch(db_conn, None, batch.id)
    assert closed is not None and closed.status == "expired"
    assert (closed.completed, closed.failed, closed.output_file_id) == (1, 1, "file-out")
    assert await budget_used(db_conn, hold) == line_cost
    assert await native_store.open_ids(db_conn) == []
