"""Batches and their lines in Postgres (OpenAI's Batch API, `spine.batches`).

The API's statements are scoped by `Owner`; the batch function's (claim lines,
record their results, finalize) name the batch by id alone: they run for the batch's
owner, whose identity the row holds. A line is the unit of idempotency: it is run by
the delivery that claims it, and its result and the batch's counters move in one
statement, so a redelivered message neither runs nor counts a line twice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from spine.storage.db import Connection
from spine.storage.owner import Owner

_COLUMNS = (
    "id, tenant, owner, api_key_id, credential, scopes, tier, endpoint, input_file_id, "
    "completion_window, metadata, status, total, completed, failed, cancelled, "
    "output_file_id, error_file_id, errors, created_at, expires_at, in_progress_at, "
    "finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at"
)
# The lines being counted (`c`) are the batch's last: the row's values before the
# update, which Postgres reads again from the locked row when another update came
# first (so two callers never both miss, or both take, the last lines).
_LAST = (
    "b.completed + b.failed + b.cancelled + c.done + c.failed >= b.total"
    " AND b.status IN ('in_progress', 'cancelling')"
)
# Statuses in which lines still run, or wait to.
OPEN = ("validating", "in_progress", "cancelling")


@dataclass(frozen=True)
class BatchRow:
    id: str
    tenant: str
    owner: str
    api_key_id: uuid.UUID | None
    credential: str
    scopes: list[str]
    tier: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    status: str
    total: int
    completed: int
    failed: int
    cancelled: int
    output_file_id: str | None
    error_file_id: str | None
    errors: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime
    in_progress_at: datetime | None
    finalizing_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    expired_at: datetime | None
    cancelling_at: datetime | None
    cancelled_at: datetime | None


@dataclass(frozen=True)
class NewBatch:
    id: str
    api_key_id: str | None
    credential: str
    scopes: Sequence[str]
    tier: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    total: int
    expires_at: datetime


async def insert_batch(conn: Connection, owner: Owner, new: NewBatch) -> BatchRow:
    cur = conn.cursor(row_factory=class_row(BatchRow))
    await cur.execute(
        f"""
INSERT INTO batches (id, tenant, owner, api_key_id, credential, scopes, tier, endpoint,
                     input_file_id, completion_window, metadata, status, total, expires_at)
VALUES (%(id)s, %(tenant)s, %(owner)s, %(api_key_id)s, %(credential)s, %(scopes)s,
        %(tier)s, %(endpoint)s, %(input_file_id)s, %(window)s, %(metadata)s, 'validating',
        %(total)s, %(expires_at)s)
RETURNING {_COLUMNS}
""",  # noqa: S608 - constant SQL, values are parameters
        {
            **owner.params(),
            "id": new.id,
            "api_key_id": new.api_key_id,
            "credential": new.credential,
            "scopes": list(new.scopes),
            "tier": new.tier,
            "endpoint": new.endpoint,
            "input_file_id": new.input_file_id,
            "window": new.completion_window,
            "metadata": None if new.metadata is None else Jsonb(new.metadata),
            "total": new.total,
            "expires_at": new.expires_at,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get_batch(conn: Connection, owner: Owner | None, batch_id: str) -> BatchRow | None:
    """The owner's batch (None: any owner's, for the batch function)."""
    cur = conn.cursor(row_factory=class_row(BatchRow))
    if owner is None:
        await cur.execute(f"SELECT {_COLUMNS} FROM batches WHERE id = %(id)s", {"id": batch_id})  # noqa: S608 - constant SQL
    else:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM batches"  # noqa: S608 - constant SQL
            " WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s",
            {**owner.params(), "id": batch_id},
        )
    return await cur.fetchone()


async def list_batches(
    conn: Connection, owner: Owner, *, after: str | None, limit: int
) -> list[BatchRow]:
    """Newest first; `after` is the last id of the previous page."""
    cur = conn.cursor(row_factory=class_row(BatchRow))
    await cur.execute(
        f"""
SELECT {_COLUMNS} FROM batches
WHERE tenant = %(tenant)s AND owner = %(owner)s
  AND (%(after)s::text IS NULL OR (created_at, id) < (
       SELECT created_at, id FROM batches
       WHERE id = %(after)s AND tenant = %(tenant)s AND owner = %(owner)s))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
""",  # noqa: S608 - constant SQL, values are parameters
        {**owner.params(), "after": after, "limit": limit},
    )
    return await cur.fetchall()


async def insert_lines(conn: Connection, batch_id: str, lines: Sequence[tuple[int, str]]) -> None:
    """(line number, custom_id) rows, pending; lines already there are kept."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO batch_lines (batch_id, line, custom_id) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            [(batch_id, line, custom_id) for line, custom_id in lines],
        )


async def start(conn: Connection, batch_id: str) -> bool:
    """validating -> in_progress; False when it was not validating (cancelled first)."""
    cur = await conn.execute(
        "UPDATE batches SET status = 'in_progress', in_progress_at = clock_timestamp()"
        " WHERE id = %(id)s AND status = 'validating' RETURNING id",
        {"id": batch_id},
    )
    return await cur.fetchone() is not None


async def claim_lines(
    conn: Connection, batch_id: str, lines: Sequence[int], *, lease_seconds: float
) -> dict[int, tuple[str, int]]:
    """Claim lines to run, in one statement; by line: ('run', attempt) when this
    delivery may run it; ('skip', 0) when it is done, cancelled, or its batch no longer
    runs lines; ('busy', 0) when another delivery holds a live claim (try it again
    later). A line that does not exist is left out."""
    cur = await conn.execute(
        """
WITH claimed AS (
    UPDATE batch_lines AS l
    SET status = 'running', attempts = l.attempts + 1,
        leased_until = clock_timestamp() + make_interval(secs => %(lease)s)
    FROM batches AS b
    WHERE l.batch_id = %(batch)s AND l.line = ANY(%(lines)s) AND b.id = l.batch_id
      AND b.status = 'in_progress'
      AND (l.status = 'pending' OR (l.status = 'running' AND l.leased_until < clock_timestamp()))
    RETURNING l.line, l.attempts
)
SELECT line, 'run', attempts FROM claimed
UNION ALL
SELECT l.line,
       CASE WHEN l.status = 'running' AND b.status = 'in_progress' THEN 'busy' ELSE 'skip' END, 0
FROM batch_lines AS l JOIN batches AS b ON b.id = l.batch_id
WHERE l.batch_id = %(batch)s AND l.line = ANY(%(lines)s)
  AND l.line NOT IN (SELECT line FROM claimed)
""",
        {"batch": batch_id, "lines": list(lines), "lease": lease_seconds},
    )
    return {
        int(line): (str(verdict), int(attempt)) for line, verdict, attempt in await cur.fetchall()
    }


async def release_lines(conn: Connection, batch_id: str, lines: Sequence[int]) -> None:
    """Give claimed lines back (a transient failure: they are run again later)."""
    if not lines:
        return
    await conn.execute(
        "UPDATE batch_lines SET status = 'pending', leased_until = NULL"
        " WHERE batch_id = %(batch)s AND line = ANY(%(lines)s) AND status = 'running'",
        {"batch": batch_id, "lines": list(lines)},
    )


@dataclass(frozen=True)
class LineResult:
    """A claimed line's outcome: its output line when `ok`, else its error line."""

    line: int
    ok: bool
    result: str


async def finish_lines(conn: Connection, batch_id: str, results: Sequence[LineResult]) -> bool:
    """Record claimed lines' results and count them, in one statement; True when they
    were the batch's last lines: the batch is then moved to finalizing, by exactly one
    caller. A line no longer claimed (another delivery took it over after its lease
    and finished first) is neither written again nor counted."""
    if not results:
        return False
    # One UPDATE of the batch row (a row updated twice in one statement keeps only
    # one change): the counts before it are the row's, so exactly one caller's update
    # brings them to `total`.
    cur = await conn.execute(
        f"""
WITH finished AS (
    UPDATE batch_lines AS l SET status = r.status, result = r.result, leased_until = NULL
    FROM unnest(%(lines)s::int[], %(statuses)s::text[], %(results)s::text[])
         AS r(line, status, result)
    WHERE l.batch_id = %(batch)s AND l.line = r.line AND l.status = 'running'
    RETURNING l.status
), counts AS (
    SELECT count(*) FILTER (WHERE status = 'done') AS done,
           count(*) FILTER (WHERE status = 'failed') AS failed
    FROM finished
)
UPDATE batches AS b SET completed = b.completed + c.done, failed = b.failed + c.failed,
    status = CASE WHEN {_LAST} THEN 'finalizing' ELSE b.status END,
    finalizing_at = CASE WHEN {_LAST} THEN clock_timestamp() ELSE b.finalizing_at END
FROM counts AS c
WHERE b.id = %(batch)s AND c.done + c.failed > 0
RETURNING b.completed + b.failed + b.cancelled = b.total AND b.status = 'finalizing'
""",  # noqa: S608 - constant SQL
        {
            "batch": batch_id,
            "lines": [r.line for r in results],
            "statuses": ["done" if r.ok else "failed" for r in results],
            "results": [r.result for r in results],
        },
    )
    row = await cur.fetchone()
    return row is not None and bool(row[0])


async def cancel(conn: Connection, owner: Owner, batch_id: str) -> tuple[BatchRow | None, bool]:
    """Ask to cancel: an open batch becomes cancelling and its lines not yet claimed
    are cancelled. (the batch, whether it now needs finalizing: nothing runs)."""
    async with conn.transaction():
        cur = await conn.execute(
            """
UPDATE batches SET status = 'cancelling', cancelling_at = clock_timestamp()
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
  AND status IN ('validating', 'in_progress')
RETURNING id
""",
            {**owner.params(), "id": batch_id},
        )
        now_cancelling = await cur.fetchone() is not None
        finalize = False
        if now_cancelling:
            finalize = await cancel_pending(conn, batch_id)
        row = await get_batch(conn, owner, batch_id)
    return row, finalize


async def cancel_pending(conn: Connection, batch_id: str) -> bool:
    """Cancel a cancelling batch's pending lines; True when that accounts for every
    line (the batch moves to finalizing, once)."""
    cur = await conn.execute(
        """
WITH gone AS (
    UPDATE batch_lines SET status = 'cancelled'
    WHERE batch_id = %(id)s AND status = 'pending'
    RETURNING 1
), counts AS (SELECT count(*) AS n FROM gone)
UPDATE batches SET cancelled = cancelled + counts.n,
    status = CASE WHEN completed + failed + cancelled + counts.n >= total
                  THEN 'finalizing' ELSE status END,
    finalizing_at = CASE WHEN completed + failed + cancelled + counts.n >= total
                         THEN clock_timestamp() ELSE finalizing_at END
FROM counts
WHERE id = %(id)s AND status = 'cancelling'
RETURNING status = 'finalizing'
""",
        {"id": batch_id},
    )
    row = await cur.fetchone()
    return row is not None and bool(row[0])


async def to_finalizing(conn: Connection, batch_id: str, *, expired: bool) -> bool:
    """Move an open batch to finalizing now (its window passed: `expired`, or a
    cancellation whose running lines never reported back); False when it was not open."""
    cur = await conn.execute(
        """
UPDATE batches SET status = 'finalizing', finalizing_at = clock_timestamp(),
    expired_at = CASE WHEN %(expired)s THEN clock_timestamp() ELSE expired_at END
WHERE id = %(id)s AND status IN ('validating', 'in_progress', 'cancelling')
RETURNING id
""",
        {"id": batch_id, "expired": expired},
    )
    return await cur.fetchone() is not None


async def fail(conn: Connection, batch_id: str, errors: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE batches SET status = 'failed', failed_at = clock_timestamp(), errors = %(e)s"
        " WHERE id = %(id)s AND status IN ('validating', 'in_progress')",
        {"id": batch_id, "e": Jsonb(errors)},
    )


async def result_lines(
    conn: Connection, batch_id: str, *, ok: bool, page: int = 1000
) -> AsyncIterator[tuple[int, str, str, str | None]]:
    """(line, custom_id, status, result) in line order, of the output lines (`ok`) or
    of every other line; read a page at a time (keyset), never the whole batch."""
    after = 0
    while True:
        cur = await conn.execute(
            """
SELECT line, custom_id, status, result FROM batch_lines
WHERE batch_id = %(id)s AND line > %(after)s
  AND (CASE WHEN %(ok)s THEN status = 'done' ELSE status <> 'done' END)
ORDER BY line LIMIT %(page)s
""",
            {"id": batch_id, "after": after, "ok": ok, "page": page},
        )
        rows = await cur.fetchall()
        for row in rows:
            yield int(row[0]), str(row[1]), str(row[2]), row[3]
        if len(rows) < page:
            return
        after = int(rows[-1][0])


async def finish(
    conn: Connection, batch_id: str, *, output_file_id: str | None, error_file_id: str | None
) -> None:
    """finalizing -> completed, cancelled (it was cancelling) or expired (it expired)."""
    await conn.execute(
        """
UPDATE batches SET output_file_id = %(out)s, error_file_id = %(err)s,
    status = CASE WHEN expired_at IS NOT NULL THEN 'expired'
                  WHEN cancelling_at IS NOT NULL THEN 'cancelled' ELSE 'completed' END,
    completed_at = CASE WHEN expired_at IS NULL AND cancelling_at IS NULL
                        THEN clock_timestamp() END,
    cancelled_at = CASE WHEN expired_at IS NULL AND cancelling_at IS NOT NULL
                        THEN clock_timestamp() END
WHERE id = %(id)s AND status = 'finalizing'
""",
        {"id": batch_id, "out": output_file_id, "err": error_file_id},
    )


async def overdue(conn: Connection, *, cancel_grace_seconds: float) -> list[tuple[str, bool]]:
    """Open batches past their window (id, True), and cancelling ones whose running
    lines never reported back within the grace (id, False). Native batches are the
    provider's to expire (spine.batches.native.poll)."""
    cur = await conn.execute(
        """
SELECT id, expires_at < clock_timestamp() FROM batches
WHERE status IN ('validating', 'in_progress', 'cancelling')
  AND NOT EXISTS (SELECT 1 FROM native_batches n WHERE n.batch_id = batches.id)
  AND (expires_at < clock_timestamp()
       OR (status = 'cancelling'
           AND cancelling_at < clock_timestamp() - make_interval(secs => %(grace)s)))
""",
        {"grace": cancel_grace_seconds},
    )
    return [(str(r[0]), bool(r[1])) for r in await cur.fetchall()]


async def stuck_finalizing(conn: Connection, *, older_than_seconds: float) -> list[str]:
    """Batches finalizing for longer than a finalization takes (its message was lost)."""
    cur = await conn.execute(
        "SELECT id FROM batches WHERE status = 'finalizing'"
        " AND NOT EXISTS (SELECT 1 FROM native_batches n WHERE n.batch_id = batches.id)"
        " AND finalizing_at < clock_timestamp() - make_interval(secs => %(s)s)",
        {"s": older_than_seconds},
    )
    return [str(r[0]) for r in await cur.fetchall()]
