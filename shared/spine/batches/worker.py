"""The batch function: consumes the batch work queue and runs the expiry schedule.

An SQS event is processed with Powertools' batch utility (`AsyncBatchProcessor`):
its records run concurrently, and the answer's `batchItemFailures` names the ones to
deliver again. A line is run only by the delivery that claims it
(`spine.storage.batches.claim_line`): a message delivered twice runs once. A line
that fails transiently is given back and its message made visible again after a
backoff that doubles per attempt; at its last attempt (`[batch] line_attempts`)
its error goes to the error file, so the batch still completes. The line that
accounts for the batch's last one queues its finalization.

A scheduled event (no `Records`) sweeps open batches: past their window they expire
(finalized with what finished), cancelled ones whose running lines never reported
are closed, and a finalization whose message was lost is queued again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, NoReturn

from spine.aws.batch_objects import ObjectStore, WorkQueue
from spine.batches import messages
from spine.batches.files import object_store
from spine.batches.finalize import finalize
from spine.batches.lines import Answered, TryAgain, result_line, run_line
from spine.batches.native.poll import poll_native_batches
from spine.batches.service import work_queue
from spine.errors import error_body
from spine.ledger.recorder import UsageRecorder
from spine.observability import get_logger
from spine.registry.source import RegistrySource
from spine.settings import Settings
from spine.storage import batches as store
from spine.storage import files as file_store
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.owner import Owner

logger = get_logger(__name__)

MAX_RETRY_DELAY_SECONDS = 900  # SQS's longest visibility change is 12 hours; enough
# A batch cancelled this long ago whose running lines never reported is closed.
CANCEL_GRACE_SECONDS = 600
# A finalization queued this long ago and not done is queued again.
FINALIZE_GRACE_SECONDS = 900
# A chunk of the input enqueued per invocation stops at this many bytes too.
ENQUEUE_CHUNK_BYTES = 32 * 1024 * 1024


class RetryLater(Exception):
    """Raised for a record Powertools must report failed: its message comes back."""


@dataclass
class BatchWorker:
    settings: Settings
    registry: RegistrySource
    database: Database
    recorder: UsageRecorder

    @property
    def queue(self) -> WorkQueue:
        return work_queue(self.settings.batch)

    @property
    def objects(self) -> ObjectStore:
        return object_store(self.settings.batch)

    async def handle(self, body: str, receipt_handle: str, receives: int) -> None:
        """One queue message; raises RetryLater (or any error) to have it delivered
        again."""
        message = json.loads(body)
        kind = message.get("kind")
        if kind == "line":
            await self.run_line(message, receipt_handle, receives)
        elif kind == "start":
            await self.enqueue(message)
        elif kind == "finalize":
            await self.finalize(message["batch"])
        else:
            logger.error("unknown batch message dropped", extra={"kind": kind})

    # --- lines ---------------------------------------------------------------------

    async def run_line(self, message: dict[str, Any], receipt_handle: str, receives: int) -> None:
        batch_id, number = message["batch"], int(message["line"])
        batch_settings = self.settings.batch
        conn = await self.database.connection()
        claim = await store.claim_line(
            conn, batch_id, number, lease_seconds=batch_settings.line_lease_seconds
        )
        if claim is None or claim[0] == "skip":
            return  # done, cancelled, or its batch stopped: nothing to run again
        verdict, attempt = claim
        if verdict == "busy":  # another delivery runs it now
            await self._later(receipt_handle, batch_settings.retry_delay_seconds)
        batch = await store.get_batch(conn, None, batch_id)
        assert batch is not None
        last = attempt >= batch_settings.line_attempts or receives >= batch_settings.line_attempts
        try:
            request = message["request"] or await asyncio.to_thread(
                self._read_line, batch, message["offset"], message["length"]
            )
            outcome = await run_line(
                batch,
                message["custom_id"],
                request,
                attempt=attempt,
                last_attempt=last,
                settings=self.settings,
                registry=self.registry.current(),
                database=self.database,
                recorder=self.recorder,
            )
        except Exception:
            if not last:
                await store.release_line(await self.database.connection(), batch_id, number)
                raise
            # A failure of Spine itself, at the line's last attempt: the error file.
            logger.exception("batch line failed", extra={"batch_id": batch_id, "line": number})
            body = error_body("The request failed inside Spine.", "server_error", None, None)
            rid = f"{batch_id}:{message['custom_id']}"
            outcome = Answered(False, result_line(message["custom_id"], rid, 500, body))
        if isinstance(outcome, TryAgain):
            await store.release_line(await self.database.connection(), batch_id, number)
            delay = batch_settings.retry_delay_seconds * 2 ** (attempt - 1)
            await self._later(receipt_handle, min(MAX_RETRY_DELAY_SECONDS, delay))
        conn = await self.database.connection()
        if await store.finish_line(conn, batch_id, number, ok=outcome.ok, result=outcome.line):
            await asyncio.to_thread(self.queue.send, [messages.finalize(batch_id)])

    async def _later(self, receipt_handle: str, seconds: int) -> NoReturn:
        await asyncio.to_thread(self.queue.retry_later, receipt_handle, seconds)
        raise RetryLater(f"retry in {seconds} s")

    def _read_line(self, batch: BatchRow, offset: int, length: int) -> dict[str, Any]:
        key = f"files/{batch.input_file_id}"
        line: dict[str, Any] = json.loads(self.objects.read_range(key, offset, length))
        return line

    # --- enqueueing ------------------------------------------------------------------

    async def enqueue(self, message: dict[str, Any]) -> None:
        """Record and queue one chunk of the input file's lines, then queue the next
        chunk's `start` (each invocation stays short, whatever the file's size)."""
        batch_id = message["batch"]
        conn = await self.database.connection()
        batch = await store.get_batch(conn, None, batch_id)
        if batch is None or batch.status not in ("validating", "in_progress", "cancelling"):
            return
        owner = Owner(batch.tenant, batch.owner)
        input_file = await file_store.get_file(conn, owner, batch.input_file_id)
        if input_file is None:
            await store.fail(conn, batch_id, _errors("file_deleted", "The input file is gone."))
            return
        chunk = await asyncio.to_thread(
            self._read_chunk, batch_id, input_file.s3_key, message["offset"], message["line"]
        )
        await store.insert_lines(conn, batch_id, [(m["line"], m["custom_id"]) for m in chunk.lines])
        await store.start(conn, batch_id)
        current = await store.get_batch(conn, None, batch_id)
        assert current is not None
        if current.status == "cancelling":
            if await store.cancel_pending(conn, batch_id):
                await asyncio.to_thread(self.queue.send, [messages.finalize(batch_id)])
            return
        follow_up = [] if chunk.done else [messages.start(batch_id, **chunk.next)]
        await asyncio.to_thread(self.queue.send, [*chunk.lines, *follow_up])

    def _read_chunk(self, batch_id: str, key: str, offset: int, line: int) -> _Chunk:
        inline_limit = self.settings.batch.inline_line_bytes
        chunk = _Chunk()
        size = 0
        for raw in self.objects.lines(key, offset):
            line += 1
            length = len(raw)
            if raw.strip():
                request = json.loads(raw)
                chunk.lines.append(
                    messages.line(
                        batch_id,
                        line,
                        request["custom_id"],
                        request if length <= inline_limit else None,
                        offset=offset,
                        length=length,
                    )
                )
                size += length
            offset += length
            if len(chunk.lines) >= self.settings.batch.enqueue_chunk or size > ENQUEUE_CHUNK_BYTES:
                chunk.next = {"offset": offset, "line": line}
                return chunk
        chunk.done = True
        return chunk

    # --- finalization and the schedule ----------------------------------------------

    async def finalize(self, batch_id: str) -> None:
        batch = await store.get_batch(await self.database.connection(), None, batch_id)
        if batch is not None:
            await finalize(self.database, self.objects, batch)

    async def sweep(self) -> dict[str, int]:
        """Poll native batches at their providers; expire batches past their window,
        close cancellations whose lines never reported, queue lost finalizations again."""
        native = await poll_native_batches(
            self.database, self.settings, self.registry.current(), self.objects
        )
        conn = await self.database.connection()
        queued = []
        for batch_id, expired in await store.overdue(
            conn, cancel_grace_seconds=CANCEL_GRACE_SECONDS
        ):
            if await store.to_finalizing(conn, batch_id, expired=expired):
                queued.append(batch_id)
        stuck = await store.stuck_finalizing(conn, older_than_seconds=FINALIZE_GRACE_SECONDS)
        batch_ids = [*queued, *stuck]
        if batch_ids:
            await asyncio.to_thread(self.queue.send, [messages.finalize(b) for b in batch_ids])
        return {"finalizing": len(queued), "requeued": len(stuck), "native_polled": native}


@dataclass
class _Chunk:
    lines: list[messages.LineMessage] = field(default_factory=list)
    # Where the next chunk starts ({"offset", "line"}), unless `done`.
    next: dict[str, int] = field(default_factory=dict)
    done: bool = False


def _errors(code: str, message: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"code": code, "message": message}]}
