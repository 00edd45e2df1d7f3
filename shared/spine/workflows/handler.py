"""The workflows function: each SQS message names one step of a pipeline run
(`spine.workflows.runs.Runner.run_step`). Powertools' batch utility reports the
messages that failed (`batchItemFailures`), so only those come back: a step busy on
another instance, or a failure of Spine's own (the database away). A step's model
failing is the step's outcome, written to its row, not a failed message.

Built on the first message, kept by a warm container: settings, the registry, the
database and one event loop (Powertools' own advice for a thawed container).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from functools import cache
from typing import Any

from spine.aws.live_registry import open_registry_source
from spine.ledger.recorder import PostgresUsageRecorder
from spine.ledger.spool import spool_for
from spine.observability import get_logger
from spine.registry.source import RegistrySource
from spine.settings import get_settings
from spine.storage.db import Database
from spine.workflows.runs import Runner, SqsDispatch

logger = get_logger(__name__)


@cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


@cache
def _parts() -> tuple[Database, RegistrySource, PostgresUsageRecorder, SqsDispatch]:
    settings = get_settings()
    database = Database()
    recorder = PostgresUsageRecorder(database, spool_for(settings))
    return (
        database,
        open_registry_source(settings),
        recorder,
        SqsDispatch(settings.workflows.queue_url),
    )


def runner() -> Runner:
    database, registry, recorder, dispatch = _parts()
    return Runner(database, get_settings(), registry.current(), recorder, dispatch)


def handle_message(body: str) -> str:
    """Run the step one message names; what happened."""
    try:
        message = json.loads(body)
        run_id, step_id = uuid.UUID(message["run_id"]), str(message["step_id"])
    except (ValueError, KeyError, TypeError):
        # Not Spine's: retrying cannot help, so it is acknowledged and logged.
        logger.error("pipeline step message malformed", extra={"body": body[:500]})
        return "malformed"
    outcome = _loop().run_until_complete(runner().run_step(run_id, step_id))
    logger.info(
        "pipeline step handled", extra={"run_id": str(run_id), "step": step_id, "outcome": outcome}
    )
    return outcome


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.batch import (  # noqa: PLC0415 - at the first event, not at import
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    processor = BatchProcessor(event_type=EventType.SQS)
    answer = process_partial_response(
        event=event,
        record_handler=lambda record: handle_message(record.body),
        processor=processor,
        context=context,
    )
    return dict(answer)
