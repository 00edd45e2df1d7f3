"""A group's usage rows written together: one flush, idempotent as single rows are,
and spooled row by row when the database does not take them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from spine.auth.principal import Principal
from spine.ledger.recorder import BufferedUsageRecorder, PostgresUsageRecorder, UsageEntry
from spine.ledger.spool import FileSpool
from spine.schemas.openai import Usage
from spine.storage import db
from spine.storage.db import Database

ALICE = Principal(subject="alice", credential="jwt", tenant="acme")


def entry(request_id: str) -> UsageEntry:
    return UsageEntry(
        request_id=request_id,
        principal=ALICE,
        requested_model="gpt-test",
        model_id="gpt-test",
        provider="openai",
        deployment="primary",
        endpoint="chat.completions",
        usage=Usage(prompt_tokens=9, completion_tokens=3, total_tokens=12),
        cost_usd=Decimal("0.000003"),
        latency_ms=1.5,
        metadata={"batch_id": "batch_1"},
    )


async def test_a_flush_writes_the_group_once_however_often_it_is_sent(
    db_url: str, db_conn: db.Connection
) -> None:
    buffered = BufferedUsageRecorder(PostgresUsageRecorder(Database()))
    for n in range(25):
        await buffered.record(entry(f"batch_1:req-{n}"))
    await buffered.record(entry("batch_1:req-0"))  # the same line recorded again
    # Nothing is written before the flush
    cur = await db_conn.execute("SELECT count(*) FROM usage_events")
    assert await cur.fetchone() == (0,)
    await buffered.flush()
    for n in range(3):  # a redelivered group records its lines again
        await buffered.record(entry(f"batch_1:req-{n}"))
    await buffered.flush()
    cur = await db_conn.execute(
        "SELECT count(*), count(DISTINCT request_id), sum(prompt_tokens) FROM usage_events"
    )
    assert await cur.fetchone() == (25, 25, 225)


async def test_rows_the_database_does_not_take_are_spooled_each(tmp_path: Path) -> None:
    # Given a database that is not there
    db.configure("postgresql://spine@127.0.0.1:9/nowhere", connect_timeout=1)
    try:
        spool = FileSpool(tmp_path / "spool")
        buffered = BufferedUsageRecorder(PostgresUsageRecorder(Database(), spool))
        for n in range(4):
            await buffered.record(entry(f"batch_1:req-{n}"))
        # When the group is flushed, it does not raise
        await buffered.flush()
    finally:
        db.configure(None)
    # And each row waits in the spool
    assert len(spool.pending()) == 4
