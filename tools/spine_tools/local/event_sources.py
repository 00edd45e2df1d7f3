"""The template's SQS event sources and ScheduleV2 schedules, run locally.

What Lambda's event source mapping does for an `SQS` event: poll the queue (long
polling), invoke the function with up to `BatchSize` messages as a real SQS event, at
most `ScalingConfig.MaximumConcurrency` invocations at once; then delete what was
handled. With `ReportBatchItemFailures`, the messages named in the answer's
`batchItemFailures` stay on the queue and the others are deleted; an invocation that
fails or times out keeps its whole batch. A message kept becomes visible again after
the queue's visibility timeout (or what the function set), and the queue's redrive
policy, enforced by the SQS endpoint, moves a message received too often aside.

What EventBridge Scheduler does for a `ScheduleV2` event: invoke the function every
`rate(...)` with the event's `Input` (JSON), or `{}` without one. `time_scale` shrinks
every rate (tests run an hourly schedule every few milliseconds).

Generic: nothing here knows what a function does with its events.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spine_tools.local.intrinsics import LOCAL_REGION, LocalResource
from spine_tools.local.runtime import FunctionRuntime, Succeeded
from spine_tools.local.template import ScheduleEvent, SqsEvent

logger = logging.getLogger("spine_tools.local")

# A receive waits this long for messages: short, so stopping is quick.
LONG_POLL_SECONDS = 1
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """Seconds between runs of `rate(N unit)`; None for any other expression."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda hands a function for `messages` (as ReceiveMessage returned
    them, with their attributes)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes") or {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "binaryValue": value.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value.get("DataType", "String"),
                    }
                    for name, value in (m.get("MessageAttributes") or {}).items()
                },
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": LOCAL_REGION,
            }
            for m in messages
        ]
    }


def kept_message_ids(outcome: object, event: SqsEvent, received: list[str]) -> set[str]:
    """Which received messages stay on the queue after the invocation's `outcome`."""
    if not isinstance(outcome, Succeeded):
        return set(received)  # an error or a timeout: the whole batch comes back
    if not event.report_item_failures or not isinstance(outcome.result, dict):
        return set()
    failures = outcome.result.get("batchItemFailures") or []
    ids = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}
    if ids - set(received):
        # Lambda treats an answer naming unknown messages as a failed invocation.
        return set(received)
    return ids


@dataclass
class _Stop:
    event: threading.Event

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)

    @property
    def set(self) -> bool:
        return self.event.is_set()


class EventSources:
    """Pollers for every SQS event and timers for every ScheduleV2 event of the
    functions given, started and stopped together."""

    def __init__(
        self,
        runtimes: Mapping[str, FunctionRuntime],
        resources: Mapping[str, LocalResource],
        endpoint: str,
        *,
        time_scale: float = 1.0,
    ) -> None:
        self.runtimes = runtimes
        self.resources = resources
        self.endpoint = endpoint
        self.time_scale = time_scale
        self._stop = _Stop(threading.Event())
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for logical_id, runtime in self.runtimes.items():
            for event in runtime.spec.sqs_events:
                queue = self.resources.get(event.queue)
                if queue is None:
                    logger.warning(
                        "%s.%s: queue %s was not made; not polled",
                        logical_id,
                        event.name,
                        event.queue,
                    )
                    continue
                # Never more pollers than containers: each invocation holds one.
                for index in range(max(1, min(event.max_concurrency, runtime.pool_size))):
                    self._spawn(
                        f"sqs-{logical_id}-{event.name}-{index}",
                        self._poll,
                        runtime,
                        event,
                        queue,
                    )
            for schedule in runtime.spec.schedules:
                self._spawn(f"schedule-{logical_id}-{schedule.name}", self._tick, runtime, schedule)

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.event.set()
        for thread in self._threads:
            thread.join(timeout=LONG_POLL_SECONDS + 30)
        self._threads.clear()

    def _poll(self, runtime: FunctionRuntime, event: SqsEvent, queue: LocalResource) -> None:
        import boto3

        sqs = boto3.session.Session(region_name=LOCAL_REGION).client(
            "sqs", endpoint_url=self.endpoint
        )
        url, arn = queue.ref, queue.attributes["Arn"]
        while not self._stop.set:
            try:
                messages = self._receive(sqs, url, event)
            except Exception:
                logger.exception("receive from %s failed", url)
                self._stop.wait(1.0)
                continue
            if not messages:
                continue
            outcome = runtime.invoke(sqs_event(messages, arn))
            received = [m["MessageId"] for m in messages]
            kept = kept_message_ids(outcome, event, received)
            done = [m for m in messages if m["MessageId"] not in kept]
            if kept:
                logger.info(
                    "%s.%s: %d of %d messages stay on the queue",
                    runtime.spec.logical_id,
                    event.name,
                    len(kept),
                    len(messages),
                )
            for start in range(0, len(done), 10):
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ]
                sqs.delete_message_batch(QueueUrl=url, Entries=entries)

    def _receive(self, sqs: Any, url: str, event: SqsEvent) -> list[dict[str, Any]]:
        """Up to BatchSize messages, gathered for up to the batching window (SQS gives
        at most 10 per receive)."""
        deadline = time.monotonic() + event.batching_window_seconds * self.time_scale
        messages: list[dict[str, Any]] = []
        while len(messages) < event.batch_size and not self._stop.set:
            answer = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, event.batch_size - len(messages)),
                WaitTimeSeconds=0 if messages else LONG_POLL_SECONDS,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            got = answer.get("Messages") or []
            messages += got
            if not got and (messages or time.monotonic() >= deadline):
                break
            if messages and time.monotonic() >= deadline:
                break
        return messages

    def _tick(self, runtime: FunctionRuntime, schedule: ScheduleEvent) -> None:
        every = rate_seconds(schedule.expression)
        if not schedule.enabled:
            return
        if every is None:
            logger.warning(
                "%s.%s: only rate(...) schedules run locally, not %r",
                runtime.spec.logical_id,
                schedule.name,
                schedule.expression,
            )
            return
        text = schedule.input or "{}"
        while not self._stop.wait(every * self.time_scale):
            outcome = runtime.invoke(json.loads(text))
            if not isinstance(outcome, Succeeded):
                logger.error("%s.%s: scheduled run failed", runtime.spec.logical_id, schedule.name)
