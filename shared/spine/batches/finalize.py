"""Write a finished batch's output and error files, streaming.

The lines' results are read a page at a time in line order (`result_lines`) and sent
to S3 a part at a time (a multipart upload), so memory holds one page and one part
whatever the batch's size. Lines that never ran (the batch expired or was cancelled)
go to the error file with OpenAI's `batch_expired` / `batch_cancelled` error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from spine.aws.batch_objects import ObjectStore
from spine.batches.files import save_output
from spine.batches.lines import unrun_line
from spine.batches.objects import write_object
from spine.storage import batches as store
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.owner import Owner

_NOT_RUN = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": ("batch_cancelled", "The batch was cancelled before this request ran."),
}


async def finalize(database: Database, objects: ObjectStore, batch: BatchRow) -> None:
    """Write the files of a finalizing batch and close it (completed, cancelled or
    expired); nothing for a batch that is not finalizing (a redelivered message)."""
    if batch.status != "finalizing":
        return
    not_run = _NOT_RUN["expired" if batch.expired_at else "cancelled"]
    owner = Owner(batch.tenant, batch.owner)
    conn = await database.connection()

    async def results(ok: bool) -> AsyncIterator[bytes]:
        async for _, custom_id, status, result in store.result_lines(conn, batch.id, ok=ok):
            text = result if status in ("done", "failed") and result else None
            yield ((text or unrun_line(custom_id, *not_run)) + "\n").encode()

    file_ids: dict[bool, str | None] = {}
    for ok, suffix in ((True, "output"), (False, "error")):
        key = f"files/{batch.id}_{suffix}.jsonl"
        size = await write_object(objects, key, results(ok))
        file_ids[ok] = None
        if size:
            saved = await save_output(
                database, owner, filename=f"{batch.id}_{suffix}.jsonl", key=key, size=size
            )
            file_ids[ok] = saved.id
    await store.finish(
        await database.connection(),
        batch.id,
        output_file_id=file_ids[True],
        error_file_id=file_ids[False],
    )
