"""Lambda entry logic of the `batch` function: SQS events of the batch work queue
through Powertools' batch utility (partial failures reported), and the schedule's
sweep. What a warm container keeps (settings, registry, database, recorder) is built
on its first event, never at import."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from spine.batches.worker import BatchWorker
from spine.observability import bind_function
from spine.pipeline.warm import warm_parts


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    bind_function(
        getattr(context, "function_name", ""),
        function_request_id=getattr(context, "aws_request_id", ""),
    )
    parts = warm_parts()
    worker = BatchWorker(
        settings=parts.settings,
        registry=parts.registry,
        database=parts.database,
        recorder=parts.recorder,
    )
    if not isinstance(event, dict) or "Records" not in event:
        # A scheduled run, on the container's loop (its database connection).
        return {"swept": _container_loop().run_until_complete(worker.sweep())}

    limit = asyncio.Semaphore(worker.settings.batch.line_concurrency)
    deadline = time.monotonic() + start_lines_within(
        context.get_remaining_time_in_millis() / 1000, worker.settings.batch.line_lease_seconds
    )

    async def record_handler(record: SQSRecord) -> None:
        await worker.handle(record.body, limit=limit, deadline=deadline)

    answer = async_process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=AsyncBatchProcessor(event_type=EventType.SQS),
        context=context,
    )
    return dict(answer)


def start_lines_within(remaining_seconds: float, line_seconds: float) -> float:
    """How long an invocation with `remaining_seconds` may start lines: a line
    started later might outlive the invocation (a line is given its lease to finish),
    yet at least half the time, so an invocation always makes progress."""
    return max(remaining_seconds - line_seconds, remaining_seconds / 2)


def _container_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop
