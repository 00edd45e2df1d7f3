"""Submit a batch to its provider's batch API, when it may go natively.

The input file is read from S3 a line at a time and each request prepared exactly
as the live path prepares it (the model's defaults, the provider's checks) and
translated to the provider's batch line, into a temporary file (spilled to disk
past a few MB). A line the live path would refuse, or one the provider cannot
take, sends the whole batch down the queued path instead, where each line gets
its own answer.

Budgets: a native batch cannot bypass them. Its estimated cost (prompt bytes and
each line's output limit, at the batch price) is admitted against the owner's
limits as one request before the provider sees anything; refused, the batch fails
with the refusal (429). The estimate stays held until the batch ends
(`spine.batches.native.poll` gives it back once, having added each line's cost).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from pydantic import ValidationError

from spine.auth.principal import Principal
from spine.aws.batch_objects import ObjectStore
from spine.batches.native.eligibility import NativePlan, native_plan
from spine.errors import SpineError
from spine.limits.admission import admit_with, estimate_cost, release_with
from spine.observability import get_logger
from spine.pipeline.kinds import CHAT
from spine.pipeline.targets import target_for
from spine.providers.base import Target
from spine.providers.native_batch import NativeBatchApi, NotNative, batch_api
from spine.registry.resolve import Registry
from spine.registry.schema import ModelEntry
from spine.schemas.openai import ChatCompletionRequest
from spine.settings import Settings
from spine.storage import batches as store
from spine.storage import native_batches as native_store
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.files import FileRow
from spine.storage.native_batches import BudgetHold

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


async def submit_if_native(
    database: Database,
    settings: Settings,
    registry: Registry,
    *,
    principal: Principal,
    batch: BatchRow,
    input_file: FileRow,
    objects: ObjectStore,
) -> bool:
    """Submit `batch` natively when it may go so (True); False: it runs queued.
    Raises the admission's refusal or the provider's error (the batch failed)."""
    plan = native_plan(input_file.summary, batch.endpoint, registry)
    if plan is None:
        return False
    entry = plan.resolved.entry
    try:
        target = target_for(entry, settings)
        api = batch_api(entry.provider)
        translated = await asyncio.to_thread(
            translate, objects, input_file.s3_key, plan, api, target
        )
    except NotNative as reason:
        logger.info("batch runs queued", extra={"batch_id": batch.id, "reason": str(reason)})
        return False
    except SpineError as exc:
        await _fail(database, batch.id, exc)
        raise
    with translated.lines:
        await _admit_and_submit(
            database,
            settings,
            principal=principal,
            batch=batch,
            plan=plan,
            target=target,
            api=api,
            translated=translated,
        )
    return True


async def _admit_and_submit(
    database: Database,
    settings: Settings,
    *,
    principal: Principal,
    batch: BatchRow,
    plan: NativePlan,
    target: Target,
    api: NativeBatchApi,
    translated: Translated,
) -> None:
    entry = plan.resolved.entry
    try:
        reservation = await admit_with(
            database,
            principal,
            settings.limits,
            entry,
            tokens=0,  # tokens per minute do not apply: the provider runs it offline
            cost_usd=translated.estimate_usd,
        )
    except SpineError as exc:
        await _fail(database, batch.id, exc)
        raise
    try:
        provider_batch = await api.submit(target, translated.lines, translated.count)
    except BaseException as exc:
        if reservation is not None:
            await release_with(database, reservation)
        if isinstance(exc, SpineError):
            await _fail(database, batch.id, exc)
        raise
    holds = [
        BudgetHold(state.request.subject, state.request.metric, state.window_start)
        for state in (reservation.counters if reservation is not None else [])
        if state.request.metric in BUDGET_METRICS
    ]
    await native_store.insert(
        await database.connection(),
        batch_id=batch.id,
        provider=entry.provider.value,
        model_id=entry.id,
        requested_model=plan.requested_model,
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
            spool.write(json.dumps(api.request_line(target, line["custom_id"], request)).encode())
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


async def _fail(database: Database, batch_id: str, exc: SpineError) -> None:
    errors = {"object": "list", "data": [{"code": exc.code, "message": exc.message[:500]}]}
    await store.fail(await database.connection(), batch_id, errors)
