"""The batch function: consumes the batch work queue and runs the expiry schedule.

An SQS event is processed with Powertools' batch utility (`AsyncBatchProcessor`):
its records run concurrently, and the answer's `batchItemFailures` names the ones to
deliver again. A message carries a group of lines (`spine.batches.messages`); a line
is run only by the delivery that claims it (`spine.storage.batches.claim_lines`): a
message delivered twice runs each line once. The invocation's model calls are
bounded (`[batch] line_concurrency`). A line that fails transiently is given back and
queued again after a backoff that doubles per attempt; at its last attempt (`[batch]
line_attempts`) its error goes to the error file, so the batch still completes. The
group that accounts for the batch's last lines queues its finalization.

A scheduled event (no `Records`) sweeps open batches: past their window they expire
(finalized with what finished), cancelled ones whose running lines never reported
are closed, and a finalization whose message was lost is queued again.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from spine.aws.batch_objects import ObjectStore, WorkQueue
from spine.batches import messages
from spine.batches.files import object_store
from spine.batches.finalize import finalize
from spine.batches.lines import (
    AdmittedLine,
    Answered,
    TryAgain,
    admit_lines,
    request_id,
    result_line,
    run_line,
)
from spine.batches.native.poll import poll_native_batches
from spine.batches.service import work_queue
from spine.errors import ServiceUnavailableError, error_body
from spine.ledger.recorder import BufferedUsageRecorder, PostgresUsageRecorder, UsageRecorder
from spine.limits.admission import release_with
from spine.observability import get_logger
from spine.registry.source import RegistrySource
from spine.settings import Settings
from spine.storage import batches as store
from spine.storage import files as file_store
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.owner import Owner

logger = get_logger(__name__)

MAX_RETRY_DELAY_SECONDS = 900  # SQS's longest delay of a message
# A batch cancelled this long ago whose running lines never reported is closed.
CANCEL_GRACE_SECONDS = 600
# A finalization queued this long ago and not done is queued again.
FINALIZE_GRACE_SECONDS = 900
# How long a worker trusts what it read of a batch's status.
STATUS_SECONDS = 1.0
# A chunk of the input enqueued per invocation stops at this many bytes too.
ENQUEUE_CHUNK_BYTES = 32 * 1024 * 1024


@dataclass
class BatchWorker:
    settings: Settings
    registry: RegistrySource
    database: Database
    recorder: PostgresUsageRecorder
    # Whether a batch still runs lines, by id: (when read, the answer), read again
    # after STATUS_SECONDS, so a cancel stops lines that have not started yet. A
    # worker serves one invocation, so this holds only that invocation's batches.
    _running: dict[str, tuple[float, bool]] = field(default_factory=dict, init=False)

    @property
    def queue(self) -> WorkQueue:
        return work_queue(self.settings.batch)

    @property
    def objects(self) -> ObjectStore:
        return object_store(self.settings.batch)

    async def handle(self, body: str, *, limit: asyncio.Semaphore, deadline: float) -> None:
        """One queue message; raises (any error) to have it delivered again. `limit`
        bounds the model calls the invocation makes at once; no line starts after
        `deadline` (`time.monotonic()`), so the invocation ends within its timeout."""
        message = json.loads(body)
        kind = message.get("kind")
        if kind in ("lines", "line"):
            await self.run_lines(message["batch"], messages.refs_of(message), limit, deadline)
        elif kind == "start":
            await self.enqueue(message)
        elif kind == "finalize":
            await self.finalize(message["batch"])
        else:
            logger.error("unknown batch message dropped", extra={"kind": kind})

    # --- lines ---------------------------------------------------------------------

    async def run_lines(
        self,
        batch_id: str,
        refs: list[messages.LineRef],
        limit: asyncio.Semaphore,
        deadline: float,
    ) -> None:
        """Claim a group's lines (one statement), run the claimed ones concurrently,
        and record their results (one statement). Lines to run later (a transient
        failure, another delivery running them, no time left) go back to the queue as
        a new message, so this one is done once this returns: a crash before that
        brings it back, and the claims keep what finished from running again."""
        settings = self.settings.batch
        conn = await self.database.connection()
        claims = await store.claim_lines(
            conn, batch_id, [r["line"] for r in refs], lease_seconds=settings.line_lease_seconds
        )
        verdicts = {line: verdict for line, (verdict, _) in claims.items()}
        runnable = [(r, claims[r["line"]][1]) for r in refs if verdicts.get(r["line"]) == "run"]
        later = _Later()
        # Another delivery runs these now: asked again after a while, they are skipped
        # once it finished them, or run here once its lease ran out (it died).
        later.add(
            settings.retry_delay_seconds, [r for r in refs if verdicts.get(r["line"]) == "busy"]
        )
        finished: list[store.LineResult] = []
        not_started: list[messages.LineRef] = []
        if runnable:
            batch = await store.get_batch(conn, None, batch_id)
            assert batch is not None
            inline = {ref["line"]: ref["request"] for ref, _ in runnable if ref["request"]}
            admitted = await admit_lines(
                batch,
                inline,
                settings=self.settings,
                registry=self.registry.current(),
                database=self.database,
            )
            # The group's usage rows are written together, before its results.
            ledger = BufferedUsageRecorder(self.recorder)
            outcomes = await asyncio.gather(
                *(
                    self._run_one(
                        batch,
                        ref,
                        attempt=attempt,
                        admitted=admitted.get(ref["line"]),
                        recorder=ledger,
                        limit=limit,
                        deadline=deadline,
                    )
                    for ref, attempt in runnable
                )
            )
            await ledger.flush()
            for (ref, attempt), outcome in zip(runnable, outcomes, strict=True):
                if isinstance(outcome, Answered):
                    finished.append(store.LineResult(ref["line"], outcome.ok, outcome.line))
                elif outcome is None:
                    not_started.append(ref)
                else:
                    delay = settings.retry_delay_seconds * 2 ** (attempt - 1)
                    later.add(min(MAX_RETRY_DELAY_SECONDS, delay), [ref], release=True)
        later.add(0, not_started, release=True)
        conn = await self.database.connection()
        last = await store.finish_lines(conn, batch_id, finished)
        await store.release_lines(conn, batch_id, later.released)
        if later.released and not await self._still_running(batch_id):
            # Cancelled meanwhile: what was given back is cancelled, not queued.
            last = await store.cancel_pending(conn, batch_id) or last
            later.groups.clear()
        for delay, group in later.groups.items():
            queued = list(
                messages.grouped(
                    batch_id,
                    group,
                    per_message=settings.lines_per_message,
                    inline_bytes=settings.inline_line_bytes,
                )
            )
            await asyncio.to_thread(self.queue.send, queued, delay_seconds=delay)
        if last:
            await asyncio.to_thread(self.queue.send, [messages.finalize(batch_id)])

    async def _still_running(self, batch_id: str) -> bool:
        """Whether the batch still runs lines (not cancelled, expired or failed), as
        read at most STATUS_SECONDS ago."""
        now = time.monotonic()
        read_at, running = self._running.get(batch_id, (-STATUS_SECONDS, True))
        if now - read_at >= STATUS_SECONDS:
            batch = await store.get_batch(await self.database.connection(), None, batch_id)
            running = batch is not None and batch.status == "in_progress"
            self._running[batch_id] = (now, running)
        return running

    async def _run_one(
        self,
        batch: BatchRow,
        ref: messages.LineRef,
        *,
        attempt: int,
        admitted: AdmittedLine | None,
        recorder: UsageRecorder,
        limit: asyncio.Semaphore,
        deadline: float,
    ) -> Answered | TryAgain | None:
        """One claimed line's outcome; None when it was not started (out of time, or
        its batch was cancelled while it waited its turn). A failure of Spine itself
        is retried like a transient one, and at the line's last attempt goes to the
        error file as a 500."""
        last = attempt >= self.settings.batch.line_attempts
        async with limit:
            if time.monotonic() > deadline or not await self._still_running(batch.id):
                if admitted is not None and admitted.reservation is not None:
                    await release_with(self.database, admitted.reservation)
                return None
            try:
                request = ref["request"]
                if request is None:  # too large for the message: read from the file
                    request = await asyncio.to_thread(
                        self._read_line, batch, ref["offset"], ref["length"]
                    )
                return await run_line(
                    batch,
                    ref["custom_id"],
                    request,
                    admitted=admitted,
                    attempt=attempt,
                    last_attempt=last,
                    settings=self.settings,
                    registry=self.registry.current(),
                    database=self.database,
                    recorder=recorder,
                )
            except Exception:
                logger.exception(
                    "batch line failed", extra={"batch_id": batch.id, "line": ref["line"]}
                )
                if not last:
                    return TryAgain(ServiceUnavailableError("The request failed inside Spine."))
                body = error_body("The request failed inside Spine.", "server_error", None, None)
                rid = request_id(batch.id, ref["custom_id"])
                return Answered(False, result_line(ref["custom_id"], rid, 500, body))

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
            self._read_chunk, input_file.s3_key, message["offset"], message["line"]
        )
        await store.insert_lines(conn, batch_id, [(r["line"], r["custom_id"]) for r in chunk.lines])
        await store.start(conn, batch_id)
        current = await store.get_batch(conn, None, batch_id)
        assert current is not None
        if current.status == "cancelling":
            if await store.cancel_pending(conn, batch_id):
                await asyncio.to_thread(self.queue.send, [messages.finalize(batch_id)])
            return
        follow_up = [] if chunk.done else [messages.start(batch_id, **chunk.next)]
        groups = messages.grouped(
            batch_id,
            chunk.lines,
            per_message=self.settings.batch.lines_per_message,
            inline_bytes=self.settings.batch.inline_line_bytes,
        )
        await asyncio.to_thread(self.queue.send, [*groups, *follow_up])

    def _read_chunk(self, key: str, offset: int, line: int) -> _Chunk:
        chunk = _Chunk()
        size = 0
        for raw in self.objects.lines(key, offset):
            line += 1
            length = len(raw)
            if raw.strip():
                request = json.loads(raw)
                chunk.lines.append(
                    messages.line_ref(
                        line, request["custom_id"], request, offset=offset, length=length
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
    lines: list[messages.LineRef] = field(default_factory=list)
    # Where the next chunk starts ({"offset", "line"}), unless `done`.
    next: dict[str, int] = field(default_factory=dict)
    done: bool = False


def _errors(code: str, message: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"code": code, "message": message}]}


@dataclass
class _Later:
    """Lines to run again, by the delay before they are asked for; `released`: the
    ones this delivery claimed, to give back first."""

    groups: dict[int, list[messages.LineRef]] = field(default_factory=dict)
    released: list[int] = field(default_factory=list)

    def add(self, delay: int, refs: list[messages.LineRef], *, release: bool = False) -> None:
        if refs:
            self.groups.setdefault(delay, []).extend(refs)
        if release:
            self.released.extend(r["line"] for r in refs)
