"""Where a usage row waits when Postgres cannot take it, until it can.

The ledger is what callers are billed from, so a row is never dropped: the recorder
(`spine.ledger.recorder`) retries a write on a fresh connection, and when the database
stays away it hands the row, with its rate-limit settlement, to a spool:

- `SqsSpool` deployed (`[usage] spool_queue_url`, a queue of template.yaml), drained
  by the maintenance function on its schedule;
- `FileSpool` locally (`[usage] spool_dir`), one file per row, drained by the next
  successful usage write of any local function and by `spine maintenance`.

A drained row is written with the same idempotent statement as a live one
(`settle_and_record_usage`: unique request_id, counters moved only with a new row),
so a row spooled after a write that did commit, or drained twice, still counts once.
Every spooled row is logged in full; a row that cannot even be spooled is logged in
full as an error, the last durable copy.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from spine.observability import emit_metric, get_logger
from spine.settings import Settings
from spine.storage.limits import Adjustment
from spine.storage.usage import UsageRecord

logger = get_logger(__name__)

FORMAT_VERSION = 1
_SQS_BATCH = 10  # SQS's maximum per receive and per delete


@dataclass(frozen=True)
class SpooledUsage:
    """A usage row that Postgres did not take, with the counter changes it owes."""

    record: UsageRecord
    adjustments: tuple[Adjustment, ...]

    def to_json(self) -> str:
        record = asdict(self.record)
        record["created_at"] = _iso(self.record.created_at)
        for name in ("api_key_id", "prompt_version_id"):
            if record[name] is not None:
                record[name] = str(record[name])
        record["cost_usd"] = str(self.record.cost_usd)
        record["metadata"] = dict(self.record.metadata)
        adjustments = [
            {
                "subject": a.subject,
                "metric": a.metric,
                "window_start": _iso(a.window_start),
                "delta": str(a.delta),
            }
            for a in self.adjustments
        ]
        return json.dumps(
            {"v": FORMAT_VERSION, "record": record, "adjustments": adjustments},
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SpooledUsage:
        data = json.loads(text)
        if data.get("v") != FORMAT_VERSION:
            raise ValueError(f"unknown spool format {data.get('v')!r}")
        fields = dict(data["record"])
        fields["created_at"] = _instant(fields["created_at"])
        fields["cost_usd"] = Decimal(fields["cost_usd"])
        record = UsageRecord(**fields)
        adjustments = tuple(
            Adjustment(
                subject=a["subject"],
                metric=a["metric"],
                window_start=datetime.fromisoformat(a["window_start"]),
                delta=Decimal(a["delta"]),
            )
            for a in data["adjustments"]
        )
        return cls(record, adjustments)


# Writes one spooled row to Postgres (idempotently); True when it was new there.
WriteRow = Callable[[SpooledUsage], Awaitable[bool]]


@dataclass
class DrainReport:
    written: int = 0  # rows new to the ledger
    already_there: int = 0  # rows whose first write had committed after all
    left: int = 0  # rows still waiting (the database failed mid-drain)


class UsageSpool(Protocol):
    name: str

    def keep(self, item: SpooledUsage) -> None: ...

    async def drain(self, write: WriteRow) -> DrainReport: ...


class FileSpool:
    """One JSON file per row in a folder, written atomically (temporary file, fsync,
    rename), so a crash leaves either the whole row or nothing."""

    name = "file"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def keep(self, item: SpooledUsage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{_iso(datetime.now(UTC))}-{uuid.uuid4().hex}"
        partial = self.folder / f".{name}.partial"
        with partial.open("w", encoding="utf-8") as out:
            out.write(item.to_json())
            out.flush()
            os.fsync(out.fileno())
        partial.rename(self.folder / f"{name}.json")

    def pending(self) -> list[Path]:
        """Spooled rows, oldest first."""
        try:
            return sorted(self.folder.glob("*.json"))
        except OSError:
            return []

    async def drain(self, write: WriteRow) -> DrainReport:
        report = DrainReport()
        files = self.pending()
        for index, path in enumerate(files):
            # Claimed by renaming, so two local functions draining at once never
            # both work on one file (writing twice would be harmless, but noisy).
            claimed = path.with_name(f".{path.name}.{uuid.uuid4().hex}.claimed")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another drainer took it
            try:
                new = await write(SpooledUsage.from_json(claimed.read_text(encoding="utf-8")))
            except Exception:
                claimed.rename(path)  # back in the spool for the next drain
                report.left = len(files) - index
                raise
            claimed.unlink()
            _count(report, new)
        return report


class SqsSpool:
    """Messages on an SQS queue; a message is deleted only once its row is written,
    so a drain that fails leaves it for the next one (the queue keeps it for its
    retention period, up to 14 days)."""

    name = "sqs"

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    def keep(self, item: SpooledUsage) -> None:
        from spine.aws.clients import aws_client  # noqa: PLC0415 - boto3 only where a spool queue is configured

        aws_client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=item.to_json())

    async def drain(self, write: WriteRow, *, max_batches: int = 100) -> DrainReport:
        from spine.aws.clients import aws_client  # noqa: PLC0415 - boto3 only where a spool queue is configured

        sqs = aws_client("sqs")
        report = DrainReport()
        for _ in range(max_batches):
            received = await asyncio.to_thread(
                sqs.receive_message,
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=_SQS_BATCH,
                WaitTimeSeconds=0,
            )
            messages = received.get("Messages", [])
            if not messages:
                return report
            done = []
            for message in messages:
                _count(report, await write(SpooledUsage.from_json(message["Body"])))
                done.append({"Id": message["MessageId"], "ReceiptHandle": message["ReceiptHandle"]})
            await asyncio.to_thread(sqs.delete_message_batch, QueueUrl=self.queue_url, Entries=done)
        return report


def spool_for(settings: Settings) -> UsageSpool | None:
    """The configured spool, or None (rows that Postgres refuses are only logged)."""
    usage = settings.usage
    if usage.spool_queue_url:
        return SqsSpool(usage.spool_queue_url)
    if usage.spool_dir:
        folder = Path(usage.spool_dir)
        if not folder.is_absolute():
            folder = Path(settings.base_dir) / folder
        return FileSpool(folder)
    return None


def keep(spool: UsageSpool | None, item: SpooledUsage, failure: BaseException) -> bool:
    """Put `item` in the spool; True if it is kept there. Either way, the whole row
    is in the log."""
    row = item.to_json()
    reason = type(failure).__name__
    if spool is not None:
        try:
            spool.keep(item)
        except Exception:
            logger.exception(
                "usage row lost from the spool: logged here in full",
                extra={"usage_row": row, "reason": reason, "spool": spool.name},
            )
        else:
            logger.warning(
                "usage row spooled: the database did not take it",
                extra={"usage_row": row, "reason": reason, "spool": spool.name},
            )
            emit_metric("UsageRowsSpooled", 1, "Count")
            return True
    else:
        logger.error(
            "usage row not written and no spool configured: logged here in full",
            extra={"usage_row": row, "reason": reason},
        )
    emit_metric("UsageWriteFailures", 1, "Count")
    return False


def _count(report: DrainReport, new: bool) -> None:
    if new:
        report.written += 1
    else:
        report.already_there += 1


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
