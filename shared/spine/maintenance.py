"""Scheduled maintenance: keep the tables that grow with traffic bounded.

Run hourly by the `maintenance` function (an EventBridge schedule in template.yaml)
or by hand with `spine maintenance`. Each task deletes in bounded batches, each
batch its own short transaction, so it runs against a live database without long
locks; request paths never wait for it.

- rate_counters: windows that ended over an hour ago (admission also trims a batch
  on a small share of requests; this catches quiet periods);
- response_cache: expired entries (a lookup never serves one, but they take room);
- usage_events: rows older than `[retention] usage_days` (0 keeps the ledger whole).

Before those, it writes the usage rows that waited in the spool while the database
was away (`spine.ledger.spool`); the template also runs the function every few
minutes for that task alone, so a row waits minutes, not an hour.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from spine.ledger.recorder import write_spooled
from spine.ledger.spool import spool_for
from spine.observability import emit_metric, get_logger
from spine.settings import Settings, load_settings
from spine.storage import db, limits, response_cache, usage
from spine.storage.db import Connection, Database

logger = get_logger(__name__)


TASKS = ("usage_spool", "rate_counters", "response_cache", "usage_events")


async def drain_usage_spool(settings: Settings) -> int:
    """Write the spooled usage rows; how many were new to the ledger."""

    spool = spool_for(settings)
    if spool is None:
        return 0
    report = await spool.drain(partial(write_spooled, Database()))
    if report.written or report.already_there:
        logger.info("usage spool drained", extra={"spool": spool.name, **vars(report)})
    return report.written


async def run_maintenance(
    conn: Connection, settings: Settings, tasks: tuple[str, ...] = TASKS
) -> dict[str, int]:
    """Run `tasks`; rows written (the spool) or deleted per task. A failing task is
    logged and the others still run (the next run retries it)."""

    retention = settings.retention
    batch = retention.batch_size

    async def counters() -> int:
        total = 0
        while (deleted := await limits.delete_expired(conn, batch=batch)) > 0:
            total += deleted
            if deleted < batch:
                break
        return total

    async def cache() -> int:
        return await response_cache.delete_expired(conn, batch)

    async def ledger() -> int:
        if retention.usage_days == 0:
            return 0
        cutoff = datetime.now(UTC) - timedelta(days=retention.usage_days)
        return await usage.delete_usage_before(conn, cutoff, batch_size=batch)

    async def spool() -> int:
        return await drain_usage_spool(settings)

    deleted: dict[str, int] = {}
    every = {
        "usage_spool": spool,
        "rate_counters": counters,
        "response_cache": cache,
        "usage_events": ledger,
    }
    for table, task in ((name, every[name]) for name in tasks):
        started = time.perf_counter()
        try:
            deleted[table] = await task()
        except Exception:
            logger.exception("maintenance task failed", extra={"table": table})
            emit_metric("MaintenanceFailures", 1, "Count", table=table)
            continue
        emit_metric("RowsDeleted", deleted[table], "Count", table=table)
        logger.info(
            "maintenance task done",
            extra={
                "table": table,
                "deleted": deleted[table],
                "ms": round((time.perf_counter() - started) * 1000),
            },
        )
    return deleted


async def _run(tasks: tuple[str, ...]) -> dict[str, int]:

    settings = load_settings()
    try:
        conn = await db.connection()
        return await run_maintenance(conn, settings, tasks)
    finally:
        await db.close()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry of a scheduled event: `{"tasks": [...]}` names the tasks to run
    (the frequent spool drain); anything else runs them all."""
    asked = event.get("tasks") if isinstance(event, dict) else None
    tasks = tuple(t for t in asked if t in TASKS) if isinstance(asked, list) else TASKS
    return {"deleted": asyncio.run(_run(tasks or TASKS))}
