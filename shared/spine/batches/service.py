"""OpenAI's Batch API for one principal: create, read, list, cancel.

Creating a batch checks its input file against the batch (every url its endpoint,
every model known: the file's summary, no second read), keeps the caller's identity
with it, and puts one `start` message on the work queue; the batch function
(`spine.batches.worker`) does the rest. Every statement is scoped to the caller.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from spine.auth.principal import Principal
from spine.aws.batch_objects import WorkQueue
from spine.batches import messages
from spine.batches.files import file_not_found, new_id, owner_of
from spine.batches.native.cancel import forward_cancel
from spine.batches.native.eligibility import choose_native
from spine.batches.validate import check_for_batch
from spine.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from spine.registry.resolve import Registry
from spine.schemas.batches import BatchCreate
from spine.settings import BatchSettings, get_settings
from spine.storage import batches as store
from spine.storage import files as file_store
from spine.storage.batches import BatchRow, NewBatch
from spine.storage.db import Database

WINDOWS = {"24h": timedelta(hours=24)}


def work_queue(settings: BatchSettings) -> WorkQueue:
    if not settings.queue_url:
        raise ServiceUnavailableError(
            "Batches are not configured here ([batch] queue_url is empty).",
            code="batches_not_configured",
        )
    return WorkQueue(settings.queue_url)


def batch_not_found(batch_id: str) -> NotFoundError:
    return NotFoundError(f"No such Batch object: {batch_id[:100]}", param="batch_id")


async def create_batch(
    database: Database,
    settings: BatchSettings,
    registry: Registry,
    principal: Principal,
    body: BatchCreate,
) -> BatchRow:
    owner = owner_of(principal)
    queue = work_queue(settings)
    conn = await database.connection()
    input_file = await file_store.get_file(conn, owner, body.input_file_id)
    if input_file is None:
        raise file_not_found(body.input_file_id)
    if input_file.purpose != "batch":
        raise InvalidRequestError(
            f"File {input_file.id} has purpose '{input_file.purpose}'; a batch reads a file "
            "uploaded with purpose 'batch'.",
            param="input_file_id",
            code="invalid_file",
        )
    total = check_for_batch(input_file.summary, body.endpoint, registry)
    row = await store.insert_batch(
        conn,
        owner,
        NewBatch(
            id=new_id("batch_"),
            api_key_id=principal.api_key_id,
            credential=principal.credential,
            scopes=sorted(principal.scopes),
            tier=principal.tier,
            endpoint=body.endpoint,
            input_file_id=input_file.id,
            completion_window=body.completion_window,
            metadata=body.metadata,
            total=total,
            expires_at=datetime.now(UTC) + WINDOWS[body.completion_window],
        ),
    )
    if await choose_native(database, registry, row, input_file):
        return row  # the batch function's schedule submits it to the provider
    try:
        await asyncio.to_thread(queue.send, [messages.start(row.id)])
    except Exception as exc:
        await store.fail(
            conn,
            row.id,
            {"object": "list", "data": [{"code": "queue_unavailable", "message": str(exc)[:200]}]},
        )
        raise ServiceUnavailableError(
            "The batch could not be queued; try again.", code="queue_unavailable"
        ) from exc
    return row


async def get_batch(database: Database, principal: Principal, batch_id: str) -> BatchRow:
    row = await store.get_batch(await database.connection(), owner_of(principal), batch_id)
    if row is None:
        raise batch_not_found(batch_id)
    return row


async def list_batches(
    database: Database, principal: Principal, *, after: str | None, limit: int
) -> tuple[list[BatchRow], bool]:
    rows = await store.list_batches(
        await database.connection(), owner_of(principal), after=after, limit=limit + 1
    )
    return rows[:limit], len(rows) > limit


async def cancel_batch(
    database: Database,
    settings: BatchSettings,
    principal: Principal,
    batch_id: str,
    registry: Registry,
) -> BatchRow:
    """Stop starting new lines; lines that finished stay in the output. The batch is
    `cancelling` until every running line reported, then `cancelled`. A native
    batch's cancel goes to its provider."""
    queue = work_queue(settings)
    row, finalize = await store.cancel(await database.connection(), owner_of(principal), batch_id)
    if row is None:
        raise batch_not_found(batch_id)
    if row.status not in ("cancelling", "finalizing", "cancelled"):
        raise InvalidRequestError(
            f"Batch {batch_id} is {row.status}: only a validating or in-progress batch can be "
            "cancelled.",
            param="batch_id",
            code="invalid_state",
        )
    native = await forward_cancel(database, get_settings(), registry, row)
    if finalize and not native:  # a native batch's files come from its provider's results
        await asyncio.to_thread(queue.send, [messages.finalize(row.id)])
    return row
