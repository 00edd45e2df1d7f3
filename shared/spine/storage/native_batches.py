"""Native provider batches in Postgres (`native_batches`, migration 0015).

A native batch's `batches` row keeps what the API shows (status, counts, files);
this row keeps what Spine needs to follow it at the provider: the provider's batch
id (none until the schedule submitted it) and status, and the budget counters its
estimate was taken from. A run of the schedule leases the row, so two overlapping
runs never submit one batch twice nor write its files at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from spine.storage import batches
from spine.storage.db import Connection
from spine.storage.limits import Adjustment, settle

_COLUMNS = (
    "batch_id, provider, model_id, requested_model, provider_batch_id, provider_status, "
    "estimate_usd, budget_holds, done"
)


@dataclass(frozen=True)
class BudgetHold:
    """A budget counter the batch's estimate was taken from."""

    subject: str
    metric: str
    window_start: datetime

    def adjustment(self, delta: Decimal) -> Adjustment:
        return Adjustment(self.subject, self.metric, self.window_start, delta)


@dataclass(frozen=True)
class NativeBatchRow:
    batch_id: str
    provider: str
    model_id: str
    requested_model: str
    provider_batch_id: str | None
    provider_status: str
    estimate_usd: Decimal
    budget_holds: list[dict[str, Any]]
    done: bool

    @property
    def holds(self) -> list[BudgetHold]:
        return [
            BudgetHold(h["subject"], h["metric"], datetime.fromisoformat(h["window_start"]))
            for h in self.budget_holds
        ]


async def insert_pending(
    conn: Connection, *, batch_id: str, provider: str, model_id: str, requested_model: str
) -> None:
    """A batch that goes natively, to be submitted by the schedule."""
    await conn.execute(
        """
INSERT INTO native_batches (batch_id, provider, model_id, requested_model)
VALUES (%(batch)s, %(provider)s, %(model)s, %(requested)s)
""",
        {"batch": batch_id, "provider": provider, "model": model_id, "requested": requested_model},
    )


async def submitted(
    conn: Connection,
    batch_id: str,
    *,
    provider_batch_id: str,
    provider_status: str,
    estimate_usd: Decimal,
    holds: list[BudgetHold],
) -> None:
    """The provider accepted the batch: its id, and the estimate's budget holds; the
    batch moves to in_progress."""
    async with conn.transaction():
        await conn.execute(
            """
UPDATE native_batches SET provider_batch_id = %(pid)s, provider_status = %(status)s,
    estimate_usd = %(estimate)s, budget_holds = %(holds)s, leased_until = NULL
WHERE batch_id = %(batch)s
""",
            {
                "batch": batch_id,
                "pid": provider_batch_id,
                "status": provider_status,
                "estimate": estimate_usd,
                "holds": Jsonb(
                    [
                        {
                            "subject": h.subject,
                            "metric": h.metric,
                            "window_start": h.window_start.isoformat(),
                        }
                        for h in holds
                    ]
                ),
            },
        )
        await batches.start(conn, batch_id)


async def forget(conn: Connection, batch_id: str) -> None:
    """The batch cannot go natively after all (it runs queued): no longer native."""
    await conn.execute("DELETE FROM native_batches WHERE batch_id = %(id)s", {"id": batch_id})


async def get(conn: Connection, batch_id: str) -> NativeBatchRow | None:
    cur = conn.cursor(row_factory=class_row(NativeBatchRow))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM native_batches WHERE batch_id = %(id)s",  # noqa: S608 - constant SQL
        {"id": batch_id},
    )
    return await cur.fetchone()


async def open_ids(conn: Connection, *, limit: int = 100) -> list[str]:
    """Native batches not yet closed, oldest first."""
    cur = await conn.execute(
        "SELECT batch_id FROM native_batches WHERE NOT done ORDER BY created_at LIMIT %(n)s",
        {"n": limit},
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def lease(conn: Connection, batch_id: str, *, seconds: float) -> NativeBatchRow | None:
    """Hold an open native batch for one poll; None when it is closed or another poll
    holds it."""
    cur = conn.cursor(row_factory=class_row(NativeBatchRow))
    await cur.execute(
        f"""
UPDATE native_batches SET leased_until = clock_timestamp() + make_interval(secs => %(s)s)
WHERE batch_id = %(id)s AND NOT done
  AND (leased_until IS NULL OR leased_until < clock_timestamp())
RETURNING {_COLUMNS}
""",  # noqa: S608 - constant SQL
        {"id": batch_id, "s": seconds},
    )
    return await cur.fetchone()


async def polled(
    conn: Connection, batch_id: str, *, provider_status: str, completed: int, failed: int
) -> None:
    """The provider's status and counts as this poll saw them; the lease given back."""
    await conn.execute(
        "UPDATE native_batches SET provider_status = %(status)s, polled_at = clock_timestamp(),"
        " leased_until = NULL WHERE batch_id = %(id)s",
        {"id": batch_id, "status": provider_status},
    )
    await conn.execute(
        "UPDATE batches SET completed = %(completed)s, failed = %(failed)s"
        " WHERE id = %(id)s AND status IN ('in_progress', 'cancelling')",
        {"id": batch_id, "completed": completed, "failed": failed},
    )


async def close(
    conn: Connection,
    batch_id: str,
    *,
    completed: int,
    failed: int,
    output_file_id: str | None,
    error_file_id: str | None,
    release: list[Adjustment],
) -> bool:
    """finalizing -> completed, cancelled or expired, with the batch's files and
    counts; the estimate's budget holds given back (`release`), exactly once: False
    when another poll closed it first."""
    async with conn.transaction():
        if not await _end(conn, batch_id, release):
            return False
        await conn.execute(
            "UPDATE batches SET completed = %(completed)s, failed = %(failed)s WHERE id = %(id)s",
            {"id": batch_id, "completed": completed, "failed": failed},
        )
        await batches.finish(
            conn, batch_id, output_file_id=output_file_id, error_file_id=error_file_id
        )
    return True


async def fail(
    conn: Connection, batch_id: str, errors: dict[str, Any], release: list[Adjustment]
) -> bool:
    """The provider failed (or refused) the whole batch: failed, whatever its status
    (a cancel asked meanwhile included), the estimate given back, once."""
    async with conn.transaction():
        if not await _end(conn, batch_id, release):
            return False
        await conn.execute(
            "UPDATE batches SET status = 'failed', failed_at = clock_timestamp(), errors = %(e)s"
            " WHERE id = %(id)s",
            {"id": batch_id, "e": Jsonb(errors)},
        )
    return True


async def _end(conn: Connection, batch_id: str, release: list[Adjustment]) -> bool:
    """Mark the native batch done and give its estimate back, in the caller's
    transaction; False (nothing done) when it was done already."""
    cur = await conn.execute(
        "UPDATE native_batches SET done = true, leased_until = NULL"
        " WHERE batch_id = %(id)s AND NOT done RETURNING batch_id",
        {"id": batch_id},
    )
    if await cur.fetchone() is None:
        return False
    await settle(conn, release)
    return True
