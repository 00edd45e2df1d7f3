"""Pipeline runs and their steps in Postgres.

Reads for a caller are scoped by `Owner` in the SQL; the step runner, which acts on
a queue message naming a run, reads the run by id (the message came from Spine).
A step is claimed before it runs and its outcome is written only by the attempt
that claimed it (see migration 0014).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from spine.storage.db import Connection
from spine.storage.owner import Owner

_INSERT_RUN = """
INSERT INTO pipeline_runs (pipeline_id, version, tenant, owner, principal, inputs)
VALUES (%(pipeline_id)s, %(version)s, %(tenant)s, %(owner)s, %(principal)s, %(inputs)s)
RETURNING id, pipeline_id, version, tenant, owner, principal, status, inputs, output, error,
          cancel_requested, created_at, started_at, finished_at
"""

_INSERT_STEP = """
INSERT INTO pipeline_run_steps (run_id, step_id, needs, position)
VALUES (%(run_id)s, %(step_id)s, %(needs)s, %(position)s)
"""

_GET_RUN = """
SELECT id, pipeline_id, version, tenant, owner, principal, status, inputs, output, error,
       cancel_requested, created_at, started_at, finished_at
FROM pipeline_runs
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
"""

_RUN_FOR_STEP = """
SELECT id, pipeline_id, version, tenant, owner, principal, status, inputs, output, error,
       cancel_requested, created_at, started_at, finished_at
FROM pipeline_runs WHERE id = %(id)s
"""

_STEPS = """
SELECT run_id, step_id, status, needs, position, attempts, input, output, usage, error,
       started_at, finished_at
FROM pipeline_run_steps WHERE run_id = %(run_id)s ORDER BY position
"""

# Pending, or running under a lease that ran out (its instance died): this attempt's.
# Not while the run is finished or being cancelled.
_CLAIM = """
UPDATE pipeline_run_steps AS s
SET status = 'running', attempts = s.attempts + 1,
    lease_until = clock_timestamp() + make_interval(secs => %(lease)s),
    started_at = coalesce(s.started_at, clock_timestamp())
FROM pipeline_runs AS r
WHERE s.run_id = %(run_id)s AND s.step_id = %(step_id)s AND r.id = s.run_id
  AND r.status IN ('queued', 'running') AND NOT r.cancel_requested
  AND (s.status = 'pending' OR (s.status = 'running' AND s.lease_until < clock_timestamp()))
RETURNING s.attempts
"""

_FINISH_STEP = """
UPDATE pipeline_run_steps
SET status = %(status)s, input = %(input)s, output = %(output)s, usage = %(usage)s,
    error = %(error)s, lease_until = NULL, finished_at = clock_timestamp()
WHERE run_id = %(run_id)s AND step_id = %(step_id)s AND status = 'running'
  AND attempts = %(attempt)s
RETURNING step_id
"""

# Pending steps every dependency of which succeeded or was skipped.
_READY = """
SELECT s.step_id FROM pipeline_run_steps AS s
WHERE s.run_id = %(run_id)s AND s.status = 'pending'
  AND s.needs <@ ARRAY(
        SELECT d.step_id FROM pipeline_run_steps AS d
        WHERE d.run_id = %(run_id)s AND d.status IN ('succeeded', 'skipped'))
ORDER BY s.position
"""

_START_RUN = """
UPDATE pipeline_runs SET status = 'running', started_at = clock_timestamp()
WHERE id = %(id)s AND status = 'queued'
"""

_FINISH_RUN = """
UPDATE pipeline_runs
SET status = %(status)s, output = %(output)s, error = %(error)s,
    finished_at = clock_timestamp()
WHERE id = %(id)s AND status IN ('queued', 'running')
RETURNING id
"""

# Steps that will not run any more: the run failed or was cancelled.
_CANCEL_PENDING = """
UPDATE pipeline_run_steps SET status = 'cancelled', finished_at = clock_timestamp()
WHERE run_id = %(run_id)s AND status = 'pending'
"""

_REQUEST_CANCEL = """
UPDATE pipeline_runs SET cancel_requested = true
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
RETURNING id, pipeline_id, version, tenant, owner, principal, status, inputs, output, error,
          cancel_requested, created_at, started_at, finished_at
"""

_RUNNING_STEPS = """
SELECT count(*) FROM pipeline_run_steps WHERE run_id = %(run_id)s AND status = 'running'
"""


@dataclass(frozen=True)
class RunRow:
    id: uuid.UUID
    pipeline_id: uuid.UUID
    version: int
    tenant: str
    owner: str
    principal: dict[str, Any]
    status: str
    inputs: dict[str, Any]
    output: Any
    error: dict[str, Any] | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class StepRow:
    run_id: uuid.UUID
    step_id: str
    status: str
    needs: list[str]
    position: int
    attempts: int
    input: Any
    output: Any
    usage: dict[str, Any] | None
    error: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class NewRun:
    pipeline_id: uuid.UUID
    version: int
    principal: dict[str, Any]
    inputs: dict[str, Any]
    # (step id, the step ids it reads), in the definition's order.
    steps: tuple[tuple[str, frozenset[str]], ...]


@dataclass(frozen=True)
class StepOutcome:
    status: str  # succeeded | failed | skipped | cancelled
    input: Any = None
    output: Any = None
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


async def insert_run(conn: Connection, owner: Owner, new: NewRun) -> RunRow:
    """The run and one pending row per step, in one transaction."""
    async with conn.transaction():
        async with conn.cursor(row_factory=class_row(RunRow)) as cur:
            await cur.execute(
                _INSERT_RUN,
                {
                    **owner.params(),
                    "pipeline_id": new.pipeline_id,
                    "version": new.version,
                    "principal": Jsonb(new.principal),
                    "inputs": Jsonb(new.inputs),
                },
            )
            run = await cur.fetchone()
        assert run is not None  # INSERT ... RETURNING
        async with conn.cursor() as cur:
            await cur.executemany(
                _INSERT_STEP,
                [
                    {"run_id": run.id, "step_id": step, "needs": sorted(needs), "position": i}
                    for i, (step, needs) in enumerate(new.steps)
                ],
            )
    return run


async def get_run(conn: Connection, owner: Owner, run_id: uuid.UUID) -> RunRow | None:
    async with conn.cursor(row_factory=class_row(RunRow)) as cur:
        await cur.execute(_GET_RUN, {**owner.params(), "id": run_id})
        return await cur.fetchone()


async def run_for_step(conn: Connection, run_id: uuid.UUID) -> RunRow | None:
    """The run a queue message names (the runner's read; messages come from Spine)."""
    async with conn.cursor(row_factory=class_row(RunRow)) as cur:
        await cur.execute(_RUN_FOR_STEP, {"id": run_id})
        return await cur.fetchone()


async def steps_of(conn: Connection, run_id: uuid.UUID) -> list[StepRow]:
    async with conn.cursor(row_factory=class_row(StepRow)) as cur:
        await cur.execute(_STEPS, {"run_id": run_id})
        return await cur.fetchall()


async def claim_step(
    conn: Connection, run_id: uuid.UUID, step_id: str, *, lease_seconds: float
) -> int | None:
    """This attempt's number, or None when the step is not this message's to run."""
    cur = await conn.execute(_CLAIM, {"run_id": run_id, "step_id": step_id, "lease": lease_seconds})
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def finish_step(
    conn: Connection, run_id: uuid.UUID, step_id: str, attempt: int, outcome: StepOutcome
) -> bool:
    """Write the outcome of `attempt`; False when a later attempt owns the step."""
    cur = await conn.execute(
        _FINISH_STEP,
        {
            "run_id": run_id,
            "step_id": step_id,
            "attempt": attempt,
            "status": outcome.status,
            "input": _json(outcome.input),
            "output": _json(outcome.output),
            "usage": _json(outcome.usage),
            "error": _json(outcome.error),
        },
    )
    return await cur.fetchone() is not None


async def ready_steps(conn: Connection, run_id: uuid.UUID) -> list[str]:
    cur = await conn.execute(_READY, {"run_id": run_id})
    return [str(row[0]) for row in await cur.fetchall()]


async def start_run(conn: Connection, run_id: uuid.UUID) -> None:
    await conn.execute(_START_RUN, {"id": run_id})


async def finish_run(
    conn: Connection, run_id: uuid.UUID, status: str, *, output: Any = None, error: Any = None
) -> bool:
    """End the run (once); its pending steps are cancelled. False if it had ended."""
    async with conn.transaction():
        cur = await conn.execute(
            _FINISH_RUN,
            {"id": run_id, "status": status, "output": _json(output), "error": _json(error)},
        )
        ended = await cur.fetchone() is not None
        await conn.execute(_CANCEL_PENDING, {"run_id": run_id})
    return ended


async def request_cancel(conn: Connection, owner: Owner, run_id: uuid.UUID) -> RunRow | None:
    async with conn.cursor(row_factory=class_row(RunRow)) as cur:
        await cur.execute(_REQUEST_CANCEL, {**owner.params(), "id": run_id})
        return await cur.fetchone()


async def running_steps(conn: Connection, run_id: uuid.UUID) -> int:
    cur = await conn.execute(_RUNNING_STEPS, {"run_id": run_id})
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)
