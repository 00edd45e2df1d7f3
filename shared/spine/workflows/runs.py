"""Pipeline runs: started from the API, advanced one step per queue message.

`start_run` stores the run and one pending row per step, then sends a message for
each step that reads nothing. `run_step` (the workflows function, one message) claims
its step, runs it over the variables known so far, writes its outcome, sends a
message for each step that became ready, and ends the run when nothing is left.

Surviving the death of an instance: a step is claimed with a lease; a message for a
step that is done is acknowledged without running it, one for a step whose lease is
live waits (`StepBusyError`: the queue redelivers it later), and one whose lease ran
out (its instance died) claims the step again. Outcomes are written only by the
attempt that claimed them. Model calls carry the step's request id, and the ledger
keeps one row per request id, so a step run twice is billed once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from spine.auth.principal import Principal
from spine.errors import InvalidRequestError, NotFoundError, SpineError
from spine.ledger.recorder import UsageRecorder
from spine.observability import get_logger
from spine.prompts.service import owner_of
from spine.registry.resolve import Registry
from spine.schemas.pipelines import PipelineDefinition, RunCreate, RunStepView, RunView
from spine.settings import Settings
from spine.storage import pipeline_runs as runs_store
from spine.storage import pipelines as store
from spine.storage.db import Connection, Database
from spine.storage.owner import Owner
from spine.storage.pipeline_runs import NewRun, RunRow, StepOutcome, StepRow
from spine.workflows.calls import PipelineCalls, principal_from, principal_json
from spine.workflows.definition import check_definition
from spine.workflows.expressions import evaluate, truthy
from spine.workflows.service import parse_pipeline_id
from spine.workflows.steps import execute

logger = get_logger(__name__)

# A claimed step is another instance's for this long: longer than a step can run
# (the workflows function's timeout), so only a dead instance's lease runs out.
LEASE_SECONDS = 360.0
_DONE = frozenset({"succeeded", "skipped"})
# Definitions of the versions this container ran (immutable, so never stale).
_DEFINITIONS: dict[tuple[uuid.UUID, int], PipelineDefinition] = {}
_DEFINITIONS_KEPT = 256


class StepBusyError(Exception):
    """The step is running under another instance's live lease: retry the message later."""


class Dispatch(Protocol):
    """Where ready steps go: a queue message per step."""

    async def send(self, run_id: uuid.UUID, step_ids: list[str]) -> None: ...


@dataclass(frozen=True)
class SqsDispatch:
    queue_url: str

    async def send(self, run_id: uuid.UUID, step_ids: list[str]) -> None:
        from spine.aws.clients import aws_client  # noqa: PLC0415 - boto3 only where a run starts

        sqs = aws_client("sqs")
        for start in range(0, len(step_ids), 10):  # SQS takes 10 a call
            entries = [
                {"Id": str(i), "MessageBody": step_message(run_id, step)}
                for i, step in enumerate(step_ids[start : start + 10])
            ]
            answer = await asyncio.to_thread(
                sqs.send_message_batch, QueueUrl=self.queue_url, Entries=entries
            )
            if answer.get("Failed"):
                raise SpineError("Could not queue the pipeline's steps; try again.")


def step_message(run_id: uuid.UUID, step_id: str) -> str:
    return json.dumps({"run_id": str(run_id), "step_id": step_id})


# --- the API's side ----------------------------------------------------------------------


async def start_run(
    database: Database,
    principal: Principal,
    raw_id: str,
    body: RunCreate,
    dispatch: Callable[[], Dispatch],
) -> RunView:
    """The run, queued; `dispatch` gives where its steps go, asked for only once the
    pipeline and the inputs are known good (so a missing queue is not the first word)."""
    owner = owner_of(principal)
    pipeline_id = parse_pipeline_id(raw_id)
    conn = await database.connection()
    pipeline = await store.get_pipeline(conn, owner, pipeline_id)
    if pipeline is None:
        raise NotFoundError(f"No pipeline found with id '{raw_id[:64]}'.", param="pipeline_id")
    number = body.version or pipeline.latest_version
    version = await store.get_version(conn, owner, pipeline_id, number)
    if version is None:
        raise NotFoundError(f"Pipeline '{raw_id}' has no version {number}.", param="version")
    definition = PipelineDefinition.model_validate(version.definition)
    _check_inputs(definition, body.inputs)
    checked = check_definition(definition)
    queue = dispatch()
    run = await runs_store.insert_run(
        conn,
        owner,
        NewRun(
            pipeline_id=pipeline_id,
            version=number,
            principal=principal_json(principal),
            inputs=body.inputs,
            steps=tuple((str(s.id), checked.needs[str(s.id)]) for s in definition.steps),
        ),
    )
    await queue.send(run.id, await runs_store.ready_steps(conn, run.id))
    return run_view(run)


async def get_run(database: Database, principal: Principal, raw_id: str) -> RunView:
    conn = await database.connection()
    return run_view(await _owned_run(conn, owner_of(principal), raw_id))


async def get_steps(database: Database, principal: Principal, raw_id: str) -> list[RunStepView]:
    conn = await database.connection()
    run = await _owned_run(conn, owner_of(principal), raw_id)
    return [step_view(row) for row in await runs_store.steps_of(conn, run.id)]


async def cancel_run(database: Database, principal: Principal, raw_id: str) -> RunView:
    """No step starts after this; a step running now finishes, then the run ends."""
    conn = await database.connection()
    run = await runs_store.request_cancel(conn, owner_of(principal), _run_id(raw_id))
    if run is None:
        raise _run_not_found(raw_id)
    await _end_if_cancelled(conn, run.id)
    return run_view(await _owned_run(conn, owner_of(principal), raw_id))


# --- the workflows function's side -------------------------------------------------------


@dataclass
class Runner:
    """What `run_step` needs: the database, configuration, where usage rows go, and
    where ready steps are sent."""

    database: Database
    settings: Settings
    registry: Registry
    recorder: UsageRecorder
    dispatch: Dispatch

    async def run_step(self, run_id: uuid.UUID, step_id: str) -> str:
        """Run the step a message names; what happened ("succeeded", "skipped",
        "failed", "not_mine"). Raises StepBusyError while another instance holds it."""
        conn = await self.database.connection()
        attempt = await runs_store.claim_step(conn, run_id, step_id, lease_seconds=LEASE_SECONDS)
        if attempt is None:
            return await self._not_claimed(conn, run_id, step_id)
        run = await runs_store.run_for_step(conn, run_id)
        assert run is not None  # the step's row exists, so does its run
        if run.status == "queued":
            await runs_store.start_run(conn, run_id)
        definition = await self._definition(conn, run)
        step = next(s for s in definition.steps if s.id == step_id)
        steps = await runs_store.steps_of(conn, run_id)
        variables = {**run.inputs, **{s.step_id: s.output for s in steps if s.status in _DONE}}
        outcome = await self._outcome(step, variables, run)
        if not await runs_store.finish_step(conn, run_id, step_id, attempt, outcome):
            return "not_mine"  # a later attempt claimed it meanwhile
        if outcome.status == "failed":
            await runs_store.finish_run(
                conn, run_id, "failed", error={"step": step_id, **(outcome.error or {})}
            )
            return "failed"
        ready = await runs_store.ready_steps(conn, run_id)
        if ready:
            await self.dispatch.send(run_id, ready)
        else:  # with a step ready, the run cannot be done
            await self._end_if_done(conn, run, definition)
        return outcome.status

    async def _definition(self, conn: Connection, run: RunRow) -> PipelineDefinition:
        """The run's definition; a version never changes, so it is read once per
        container."""
        key = (run.pipeline_id, run.version)
        known = _DEFINITIONS.get(key)
        if known is None:
            owner = Owner(tenant=run.tenant, subject=run.owner)
            version = await store.get_version(conn, owner, run.pipeline_id, run.version)
            assert version is not None  # a run's version goes only with the run
            known = _DEFINITIONS[key] = PipelineDefinition.model_validate(version.definition)
            while len(_DEFINITIONS) > _DEFINITIONS_KEPT:
                _DEFINITIONS.pop(next(iter(_DEFINITIONS)))
        return known

    async def _outcome(self, step: Any, variables: dict[str, Any], run: RunRow) -> StepOutcome:
        if step.when is not None and not truthy(evaluate(step.when, variables)):
            return StepOutcome("skipped")
        calls = PipelineCalls(
            self.database,
            self.settings,
            self.registry,
            self.recorder,
            principal_from(run.principal),
        )
        try:
            result = await execute(step, variables, calls, f"run_{run.id.hex}.{step.id}")
        except SpineError as exc:
            error = {"message": exc.message, "type": exc.error_type, "code": exc.code}
            return StepOutcome("failed", error=error)
        usage = result.usage.model_dump(exclude_none=True)
        return StepOutcome("succeeded", input=result.input, output=result.output, usage=usage)

    async def _not_claimed(self, conn: Connection, run_id: uuid.UUID, step_id: str) -> str:
        steps = {s.step_id: s for s in await runs_store.steps_of(conn, run_id)}
        row = steps.get(step_id)
        if row is not None and row.status == "running":
            raise StepBusyError(f"step {step_id} of run {run_id} is running elsewhere")
        if row is not None and row.status in _DONE:
            # A message that comes back after its step finished: the instance may have
            # died (or its sends failed) between finishing it and queueing what it made
            # ready, so that is done again; a step queued twice runs once.
            await self._advance(conn, run_id)
        await _end_if_cancelled(conn, run_id)
        return "not_mine"

    async def _advance(self, conn: Connection, run_id: uuid.UUID) -> None:
        run = await runs_store.run_for_step(conn, run_id)
        if run is None or run.status not in ("queued", "running"):
            return
        ready = await runs_store.ready_steps(conn, run_id)
        if ready:
            await self.dispatch.send(run_id, ready)
        await self._end_if_done(conn, run, await self._definition(conn, run))

    async def _end_if_done(
        self, conn: Connection, run: RunRow, definition: PipelineDefinition
    ) -> None:
        steps = await runs_store.steps_of(conn, run.id)
        if any(s.status not in _DONE for s in steps):
            await _end_if_cancelled(conn, run.id)
            return
        variables = {**run.inputs, **{s.step_id: s.output for s in steps}}
        expression = definition.output or str(definition.steps[-1].id)
        try:
            output = evaluate(expression, variables)
        except Exception as exc:  # jmespath's own errors: a type the expression did not expect
            await runs_store.finish_run(
                conn, run.id, "failed", error={"message": f"output: {exc}", "code": "bad_output"}
            )
            return
        await runs_store.finish_run(conn, run.id, "succeeded", output=output)


async def _end_if_cancelled(conn: Connection, run_id: uuid.UUID) -> None:
    """End a run asked to cancel once no step of it is running."""
    run = await runs_store.run_for_step(conn, run_id)
    if run is None or not run.cancel_requested or run.status not in ("queued", "running"):
        return
    if await runs_store.running_steps(conn, run_id) == 0:
        await runs_store.finish_run(conn, run_id, "cancelled")


# --- shapes ------------------------------------------------------------------------------


def _check_inputs(definition: PipelineDefinition, inputs: dict[str, Any]) -> None:
    missing = [name for name in definition.inputs if name not in inputs]
    if missing:
        raise InvalidRequestError(
            f"Missing required input: '{missing[0]}'.",
            param=f"inputs.{missing[0]}",
            code="missing_required_parameter",
        )
    unknown = sorted(set(inputs) - set(definition.inputs))
    if unknown:
        raise InvalidRequestError(
            f"Unknown input: '{unknown[0]}' (the pipeline takes "
            f"{', '.join(definition.inputs) or 'none'}).",
            param=f"inputs.{unknown[0]}",
            code="unknown_parameter",
        )


async def _owned_run(conn: Connection, owner: Owner, raw_id: str) -> RunRow:
    run = await runs_store.get_run(conn, owner, _run_id(raw_id))
    if run is None:
        raise _run_not_found(raw_id)
    return run


def _run_id(raw: str) -> uuid.UUID:
    return parse_pipeline_id(raw, param="run_id", what="pipeline run")


def _run_not_found(raw_id: str) -> NotFoundError:
    return NotFoundError(f"No pipeline run found with id '{raw_id[:64]}'.", param="run_id")


def _epoch(moment: Any) -> int | None:
    return None if moment is None else int(moment.timestamp())


def run_view(run: RunRow) -> RunView:
    return RunView(
        id=str(run.id),
        pipeline_id=str(run.pipeline_id),
        version=run.version,
        status=run.status,
        inputs=run.inputs,
        output=run.output,
        error=run.error,
        cancel_requested=run.cancel_requested,
        created_at=int(run.created_at.timestamp()),
        started_at=_epoch(run.started_at),
        finished_at=_epoch(run.finished_at),
    )


def step_view(row: StepRow) -> RunStepView:
    return RunStepView(
        id=row.step_id,
        status=row.status,
        needs=list(row.needs),
        attempts=row.attempts,
        input=row.input,
        output=row.output,
        usage=row.usage,
        error=row.error,
        started_at=_epoch(row.started_at),
        finished_at=_epoch(row.finished_at),
    )
