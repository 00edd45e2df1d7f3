"""Follow native batches from the batch function's schedule, and forward cancels.

Each run polls every open native batch's provider status. While it runs, the
provider's counts are shown as the batch's `request_counts`; once it ended, its
results are streamed twice (output lines, then error lines) into the batch's files
through the same streaming writer as queued batches, each answered line billed once
(`results`), requests that never ran marked `batch_expired` / `batch_cancelled`,
and the batch closed with the budget estimate given back, once. A poll holds its
batch by a lease; a poll that dies is simply run again by a later schedule run.
"""

from __future__ import annotations

import asyncio
import json

from spine.aws.batch_objects import ObjectStore
from spine.batches.files import save_output
from spine.batches.finalize import write_object
from spine.batches.native.results import ResultWriter
from spine.errors import SpineError
from spine.observability import get_logger
from spine.pipeline.targets import target_for
from spine.providers.base import Target
from spine.providers.native_batch import NativeBatchApi, ProviderBatch, batch_api
from spine.registry.resolve import Registry
from spine.settings import Settings
from spine.storage import batches as store
from spine.storage import files as file_store
from spine.storage import native_batches as native_store
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.native_batches import NativeBatchRow
from spine.storage.owner import Owner

logger = get_logger(__name__)

# Longer than writing the largest batch's files takes.
POLL_LEASE_SECONDS = 600
_PROVIDER_CANCELLING = ("cancelling", "canceling")


async def poll_native_batches(
    database: Database, settings: Settings, registry: Registry, objects: ObjectStore
) -> int:
    """Poll every open native batch once; how many were polled. A batch whose poll
    fails is logged and left for the next run."""
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
    target, api = _provider(native, settings, registry)
    seen = await api.status(target, native.provider_batch_id)
    if seen.state == "running":
        if batch.status == "cancelling" and seen.status not in _PROVIDER_CANCELLING:
            await api.cancel(target, native.provider_batch_id)  # a cancel not forwarded yet
        await native_store.polled(
            conn,
            batch_id,
            provider_status=seen.status,
            completed=seen.succeeded,
            failed=seen.errored,
        )
        return True
    release = [hold.adjustment(-native.estimate_usd) for hold in native.holds]
    if seen.state == "failed":
        errors = {"object": "list", "data": [{"code": "provider_failed", "message": seen.message}]}
        await native_store.fail(conn, batch_id, errors, release)
        return True
    await store.to_finalizing(conn, batch_id, expired=seen.expired)
    current = await store.get_batch(conn, None, batch_id)
    assert current is not None
    await _write_results(
        database, objects, batch=current, native=native, target=target, api=api, seen=seen
    )
    return True


def _provider(
    native: NativeBatchRow, settings: Settings, registry: Registry
) -> tuple[Target, NativeBatchApi]:
    entry = registry.get(native.model_id)
    if entry is None:
        raise RuntimeError(f"model '{native.model_id}' is no longer in models.yaml")
    return target_for(entry, settings), batch_api(native.provider)


async def _write_results(
    database: Database,
    objects: ObjectStore,
    *,
    batch: BatchRow,
    native: NativeBatchRow,
    target: Target,
    api: NativeBatchApi,
    seen: ProviderBatch,
) -> None:
    entry = target.entry
    writer = ResultWriter(database, batch, native, entry, target.deployment)
    owner = Owner(batch.tenant, batch.owner)
    output_key = f"files/{batch.id}_output.jsonl"
    output_size = await write_object(
        objects, output_key, writer.output_lines(api.results(target, seen.id))
    )
    missing = await _missing(database, objects, batch, writer.seen)
    error_key = f"files/{batch.id}_error.jsonl"
    error_size = await write_object(
        objects, error_key, writer.error_lines(api.results(target, seen.id), missing)
    )
    file_ids: list[str | None] = []
    for key, size, suffix in (
        (output_key, output_size, "output"),
        (error_key, error_size, "error"),
    ):
        saved = None
        if size:
            saved = await save_output(
                database, owner, filename=f"{batch.id}_{suffix}.jsonl", key=key, size=size
            )
        file_ids.append(saved.id if saved else None)
    closed = await native_store.close(
        await database.connection(),
        batch.id,
        completed=writer.completed,
        failed=writer.failed,
        output_file_id=file_ids[0],
        error_file_id=file_ids[1],
        release=[hold.adjustment(-native.estimate_usd) for hold in native.holds],
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


async def forward_cancel(
    database: Database, settings: Settings, registry: Registry, batch: BatchRow
) -> None:
    """Cancel a native batch at its provider (a no-op for a queued one). Best effort:
    should the provider be away, the next poll forwards it again."""
    native = await native_store.get(await database.connection(), batch.id)
    if native is None or native.done:
        return
    try:
        target, api = _provider(native, settings, registry)
        await api.cancel(target, native.provider_batch_id)
    except (SpineError, RuntimeError):
        logger.warning("native batch cancel not forwarded", extra={"batch_id": batch.id})
