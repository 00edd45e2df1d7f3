"""Native batches submitted by the batch function's schedule.

`POST /v1/batches` only chose (`eligibility.choose_native`); the batch function,
which has the time (a large file takes longer than an API request may), the
provider keys and the memory, submits the batch on the schedule's next run.

Submission reads the input file from S3 a line at a time, prepares each request
exactly as the live path prepares it (the model's defaults, the provider's checks)
and translates it to the provider's batch line, into a temporary file (spilled to
disk past a few MB). A line the live path would refuse, or one the provider cannot
take, sends the whole batch down the queued path instead, where each line gets its
own answer.

Budgets: a native batch cannot bypass them. Its estimated cost (prompt bytes and
each line's output limit, at the batch price) is admitted against the owner's
limits as one request before the provider sees anything (as `spine.pipeline.
admitted` admits a live call); refused, the batch fails with the refusal. The
estimate stays held until the batch ends (`spine.batches.native.poll` gives it
back once, having added each line's real cost).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from pydantic import ValidationError

from spine.aws.batch_objects import ObjectStore, WorkQueue
from spine.batches import messages
from spine.batches.lines import owner_principal
from spine.batches.native.eligibility import NativePlan, native_plan
from spine.errors import SpineError
from spine.limits.admission import Reservation, admit_with, estimate_cost, release_with
from spine.observability import get_logger
from spine.pipeline.kinds import CHAT
from spine.pipeline.targets import target_for
from spine.providers.base import Target
from spine.providers.native_batch import NativeBatchApi, NotNative, batch_api
from spine.registry.resolve import Registry
from spine.registry.schema import ModelEntry
from spine.schemas.openai import ChatCompletionRequest
from spine.settings import Settings
from spine.storage import files as file_store
from spine.storage import native_batches as native_store
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.native_batches import BudgetHold
from spine.storage.owner import Owner

logger = get_logger(__name__)

BUDGET_METRICS = ("usd_day", "usd_month")
# The translated requests stay in memory up to this size, then go to a file.
SPOOL_BYTES = 8 * 1024 * 1024


@dataclass
class Translated:
    lines: IO[bytes]
    count: int
    estimate_usd: Decimal


def batch_priced(entry: ModelEntry) -> ModelEntry:
    """The entry with its native batch prices, for estimates."""
    return entry.model_copy(update={"pricing": entry.batch_pricing})


class Refused(Exception):
    """The batch cannot be submitted: it fails with this error."""

    def __init__(self, error: SpineError) -> None:
        super().__init__(error.message)
        self.error = error


async def submit(
    database: Database,
    settings: Settings,
    registry: Registry,
    *,
    objects: ObjectStore,
    batch: BatchRow,
) -> None:
    """Submit a native batch to its provider; raises Refused when it cannot be (a
    budget, a missing key, the provider's refusal). A batch that cannot go natively
    after all (a line, a custom_id, models.yaml changed) is queued instead."""
    conn = await database.connection()
    input_file = await file_store.get_file(
        conn, Owner(batch.tenant, batch.owner), batch.input_file_id
    )
    plan = None if input_file is None else native_plan(input_file.summary, batch.endpoint, registry)
    try:
        if input_file is None or plan is None:
            raise NotNative("the input file or the model's opt-in is gone")
        entry = plan.resolved.entry
        target = target_for(entry, settings)
        api = batch_api(entry.provider)
        translated = await asyncio.to_thread(
            translate, objects, input_file.s3_key, plan, api, target
        )
    except NotNative as reason:
        await _run_queued(database, settings, batch, str(reason))
        return
    except SpineError as exc:
        raise Refused(exc) from exc
    with translated.lines:
        reservation = await _admit(database, settings, batch, entry, translated.estimate_usd)
        try:
            provider_batch = await api.submit(target, translated.lines, translated.count)
        except BaseException as exc:
            if reservation is not None:
                await release_with(database, reservation)
            if isinstance(exc, NotNative):
                await _run_queued(database, settings, batch, str(exc))
                return
            if isinstance(exc, SpineError):
                raise Refused(exc) from exc
            raise
    holds = [
        BudgetHold(state.request.subject, state.request.metric, state.window_start)
        for state in (reservation.counters if reservation is not None else [])
        if state.request.metric in BUDGET_METRICS
    ]
    await native_store.submitted(
        await database.connection(),
        batch.id,
        provider_batch_id=provider_batch.id,
        provider_status=provider_batch.status,
        # Held only where a budget took it: that is what the end gives back.
        estimate_usd=translated.estimate_usd if holds else Decimal(0),
        holds=holds,
    )
    logger.info(
        "batch submitted natively",
        extra={"batch_id": batch.id, "provider": entry.provider.value, "id": provider_batch.id},
    )


async def _admit(
    database: Database, settings: Settings, batch: BatchRow, entry: ModelEntry, estimate: Decimal
) -> Reservation | None:
    try:
        return await admit_with(
            database,
            owner_principal(batch),
            settings.limits,
            entry,
            tokens=0,  # tokens per minute do not apply: the provider runs it offline
            cost_usd=estimate,
        )
    except SpineError as exc:
        raise Refused(exc) from exc


async def _run_queued(database: Database, settings: Settings, batch: BatchRow, reason: str) -> None:
    """The batch goes down the queued path after all: its `start` message."""
    logger.info("batch runs queued", extra={"batch_id": batch.id, "reason": reason})
    await native_store.forget(await database.connection(), batch.id)
    queue = WorkQueue(settings.batch.queue_url)
    await asyncio.to_thread(queue.send, [messages.start(batch.id)])


def translate(
    objects: ObjectStore, key: str, plan: NativePlan, api: NativeBatchApi, target: Target
) -> Translated:
    """The input file as the provider's batch input (runs in a thread: S3 reads)."""
    priced = batch_priced(plan.resolved.entry)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - handed on
    count = 0
    estimate = Decimal(0)
    try:
        for raw in objects.lines(key):
            if not raw.strip():
                continue
            line: dict[str, Any] = json.loads(raw)
            request = _prepared(line, plan)
            try:
                translated = api.request_line(target, line["custom_id"], request)
            except SpineError as exc:  # the adapter refuses it, as it would live
                raise NotNative(f"line {line['custom_id'][:64]!r}: {exc}") from None
            spool.write(json.dumps(translated).encode())
            spool.write(b"\n")
            count += 1
            estimate += estimate_cost(priced, len(raw), request.output_limit())
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return Translated(spool, count, estimate)


def _prepared(line: dict[str, Any], plan: NativePlan) -> ChatCompletionRequest:
    """The request as the live path would send it; NotNative where it would refuse
    it (the queued path then answers that line with its error)."""
    try:
        request = ChatCompletionRequest.model_validate(line["body"])
        return CHAT.prepare(request, plan.resolved, False)
    except (ValidationError, SpineError) as exc:
        raise NotNative(f"line {line['custom_id'][:64]!r}: {exc}") from None
