"""Submit and follow native batches from the batch function's schedule.

Each run submits the native batches created since the last one
(`spine.batches.native.submit`; one cancelled before that is closed with every
request `batch_cancelled`) and polls every other open one at its provider. While
the provider runs it, its counts are shown as the batch's `request_counts`; once it
ended, its results are streamed twice (output lines, then error lines) into the
batch's files through the same streaming writer as queued batches, each answered
line billed once (`results`), requests that never ran marked `batch_expired` /
`batch_cancelled`, and the batch closed with the budget estimate given back, once.
A run holds its batch by a lease; a run that dies is simply done again later.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from spine.aws.batch_objects import ObjectStore
from spine.batches.files import save_output
from spine.batches.native.cancel import provider_of
from spine.batches.native.results import ResultWriter
from spine.batches.native.submit import Refused, submit
from spine.batches.objects import write_object
from spine.observability import get_logger
from spine.providers.base import Target
from spine.providers.native_batch import LineResult
from spine.registry.resolve import Registry
from spine.registry.schema import Pricing
from spine.settings import Settings
from spine.storage import batches as store
from spine.storage import files as file_store
from spine.storage import native_batches as native_store
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.limits import Adjustment
from spine.storage.native_batches import NativeBatchRow
from spine.storage.owner import Owner

logger = get_logger(__name__)

# The batch function's timeout (template.yaml): no run holding a batch outlives it.
POLL_LEASE_SECONDS = 900
_PROVIDER_CANCELLING = ("cancelling", "canceling")
Results = Callable[[], AsyncIterator[LineResult]]


async def poll_native_batches(
    database: Database, settings: Settings, registry: Registry, objects: ObjectStore
) -> int:
    """Submit or poll every open native batch once; how many were. A batch whose
    turn fails is logged and left for the next run."""
    polled = 0
    for batch_id in await native_store.open_ids(await database.connection()):
        try:
            polled += await _poll(database, settings, registry, objects, batch_id)
        except Exception:
            logger.exception("native batch poll failed", extra={"batch_id": batch_id})
    return polled


async def _poll(
    database: Database,
    settings: Settings,
    registry: Registry,
    objects: ObjectStore,
    batch_id: str,
) -> bool:
    conn = await database.connection()
    native = await native_store.lease(conn, batch_id, seconds=POLL_LEASE_SECONDS)
    if native is None:
        return False  # closed, or another run holds it
    batch = await store.get_batch(conn, None, batch_id)
    assert batch is not None
    if native.provider_batch_id is None:
        await _submit(database, settings, registry, objects, batch=batch, native=native)
        return True
    target, api = provider_of(native, settings, registry)
    seen = await api.status(target, native.provider_batch_id)
    if seen.state == "running":
        if batch.status == "cancelling" and seen.status not in _PROVIDER_CANCELLING:
            await api.cancel(target, seen.id)  # a cancel not forwarded yet
        await native_store.polled(
            conn,
            batch_id,
            provider_status=seen.status,
            completed=seen.succeeded,
            failed=seen.errored,
        )
        return True
    if seen.state == "failed":
        await native_store.fail(
            conn, batch_id, _errors("provider_failed", seen.message), _release(native)
        )
        return True
    await store.to_finalizing(conn, batch_id, expired=seen.expired)
    await _write_results(
        database,
        objects,
        batch_id=batch_id,
        native=native,
        target=target,
        results=lambda: api.results(target, seen.id),
    )
    return True


async def _submit(
    database: Database,
    settings: Settings,
    registry: Registry,
    objects: ObjectStore,
    *,
    batch: BatchRow,
    native: NativeBatchRow,
) -> None:
    conn = await database.connection()
    if batch.status == "cancelling":  # cancelled before it was submitted: nothing ran
        await store.to_finalizing(conn, batch.id, expired=False)
        await _write_results(
            database, objects, batch_id=batch.id, native=native, target=None, results=_none
        )
        return
    try:
        await submit(database, settings, registry, objects=objects, batch=batch)
    except Refused as refused:
        error = refused.error
        await native_store.fail(conn, batch.id, _errors(error.code, error.message), [])
        logger.info("native batch refused", extra={"batch_id": batch.id, "code": error.code})


async def _none() -> AsyncIterator[LineResult]:
    return
    yield  # an async generator of no results


async def _write_results(
    database: Database,
    objects: ObjectStore,
    *,
    batch_id: str,
    native: NativeBatchRow,
    target: Target | None,
    results: Results,
) -> None:
    """The files of a finalizing batch from the provider's `results` (read twice),
    then the batch closed."""
    batch = await store.get_batch(await database.connection(), None, batch_id)
    assert batch is not None
    writer = ResultWriter(
        database,
        batch,
        native,
        deployment=target.deployment if target else "default",
        pricing=target.entry.batch_pricing if target else Pricing(),
    )
    file_ids: list[str | None] = []
    for suffix in ("output", "error"):
        key = f"files/{batch.id}_{suffix}.jsonl"
        if suffix == "output":
            lines = writer.output_lines(results())
        else:
            missing = await _missing(database, objects, batch, writer.seen)
            lines = writer.error_lines(results(), missing)
        size = await write_object(objects, key, lines)
        saved = None
        if size:
            saved = await save_output(
                database,
                Owner(batch.tenant, batch.owner),
                filename=f"{batch.id}_{suffix}.jsonl",
                key=key,
                size=size,
            )
        file_ids.append(saved.id if saved else None)
    closed = await native_store.close(
        await database.connection(),
        batch.id,
        completed=writer.completed,
        failed=writer.failed,
        output_file_id=file_ids[0],
        error_file_id=file_ids[1],
        release=_release(native),
    )
    logger.info(
        "native batch closed",
        extra={"batch_id": batch.id, "closed": closed, "completed": writer.completed},
    )


async def _missing(
    database: Database, objects: ObjectStore, batch: BatchRow, seen: set[str]
) -> list[str]:
    """Input custom_ids the provider's results never named, in input order."""
    input_file = await file_store.get_file(
        await database.connection(), Owner(batch.tenant, batch.owner), batch.input_file_id
    )
    if input_file is None:
        return []

    def read() -> list[str]:
        missing = []
        for raw in objects.lines(input_file.s3_key):
            if raw.strip():
                custom_id = json.loads(raw)["custom_id"]
                if custom_id not in seen:
                    missing.append(custom_id)
        return missing

    return await asyncio.to_thread(read)


def _errors(code: str | None, message: str) -> dict[str, object]:
    return {"object": "list", "data": [{"code": code, "message": message[:500]}]}


def _release(native: NativeBatchRow) -> list[Adjustment]:
    """The estimate's budget holds given back."""
    return [hold.adjustment(-native.estimate_usd) for hold in native.holds]
