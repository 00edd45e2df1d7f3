"""The workflows function: each SQS message names one step of a pipeline run
(`spine.workflows.runs.Runner.run_step`). Powertools' batch utility reports the
messages that failed (`batchItemFailures`), so only those come back: a step busy on
another instance, or a failure of Spine's own (the database away). A step's model
failing is the step's outcome, written to its row, not a failed message.

Built on the first message, kept by a warm container: settings, the registry, the
database, and an event loop per thread (Powertools' own advice for a thawed container).
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

from spine.observability import get_logger
from spine.pipeline.warm import warm_parts
from spine.workflows.runs import Runner, SqsDispatch

logger = get_logger(__name__)


_thread = threading.local()


def _loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, kept across invocations. One per thread, not one per
    process: Lambda runs one invocation per container at a time, but `spine local`
    runs a function's containers as threads of one process."""
    loop: asyncio.AbstractEventLoop | None = getattr(_thread, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread.loop = asyncio.new_event_loop()
    return loop


def runner() -> Runner:
    """The runner of this container's configuration (`spine.pipeline.warm`)."""
    parts = warm_parts()
    return Runner(
        parts.database,
        parts.settings,
        parts.registry.current(),
        parts.recorder,
        SqsDispatch(parts.settings.workflows.queue_url),
    )


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

    # Every message busy is an answer naming them all, not a failed invocation.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    answer = process_partial_response(
        event=event,
        record_handler=lambda record: handle_message(record.body),
        processor=processor,
        context=context,
    )
    return dict(answer)
