"""Scheduled maintenance: keep the tables that grow with traffic bounded.

Run hourly by the `maintenance` function (an EventBridge schedule in template.yaml)
or by hand with `spine maintenance`. Each task deletes in bounded batches, each
batch its own short transaction, so it runs against a live database without long
locks; request paths never wait for it.

- rate_counters: windows that ended over an hour ago (admission also trims a batch
  on a small share of requests; this catches quiet periods);
- response_cache: expired entries (a lookup never serves one, but they take room);
- usage_events: rows older than `[retention] usage_days` (0 keeps the ledger whole).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from spine.observability import emit_metric, get_logger
from spine.settings import Settings, load_settings
from spine.storage.db import Connection

logger = get_logger(__name__)


async def run_maintenance(conn: Connection, settings: Settings) -> dict[str, int]:
    """Run every task; rows deleted per table. A failing task is logged and the
    others still run (the next run retries it)."""
    from spine.storage import limits, response_cache, usage

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

    deleted: dict[str, int] = {}
    tasks = {"rate_counters": counters, "response_cache": cache, "usage_events": ledger}
    for table, task in tasks.items():
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


async def _run() -> dict[str, int]:
    from spine.storage import db

    settings = load_settings()
    try:
        conn = await db.connection()
        return await run_maintenance(conn, settings)
    finally:
        await db.close()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry (a scheduled event: its content does not matter)."""
    return {"deleted": asyncio.run(_run())}
