"""A native batch's results as OpenAI's output and error lines, each answered line
billed once.

Every answered line (succeeded or errored at the provider) gets exactly one usage
row, request id `<batch id>:<custom_id>`, costed at the model's batch price. The
row and the line's cost added to the owner's budget counters are one idempotent
statement (`settle_and_record_usage`): a poll that runs again after a crash finds
the row there and neither bills nor counts it twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

from spine.batches.lines import owner_principal, request_id, result_line, unrun_line
from spine.errors import SpineError
from spine.ledger.cost import cost_usd
from spine.ledger.recorder import UsageEntry, usage_record, write_spooled
from spine.ledger.spool import SpooledUsage
from spine.pipeline.kinds import CHAT
from spine.providers.native_batch import LineResult
from spine.registry.schema import Pricing
from spine.schemas.openai import Usage
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.native_batches import NativeBatchRow

NOT_RUN = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": ("batch_cancelled", "The batch was cancelled before this request ran."),
    # A request the provider's results never named, in a batch that neither expired
    # nor was cancelled.
    "missing": ("batch_failed", "The provider returned no result for this request."),
}


class LineError(SpineError):
    """A request the provider answered with an error, for its usage row."""

    def __init__(self, status: int, message: str, code: str | None) -> None:
        super().__init__(message, code=code)
        self.status_code = status


@dataclass
class ResultWriter:
    database: Database
    batch: BatchRow
    native: NativeBatchRow
    deployment: str
    # The model's batch prices (spine.registry.schema.ModelEntry.batch_pricing).
    pricing: Pricing
    completed: int = 0
    failed: int = 0
    seen: set[str] = field(default_factory=set)

    async def output_lines(self, results: AsyncIterator[LineResult]) -> AsyncIterator[bytes]:
        """The output file's lines (succeeded requests), billing each."""
        async for result in results:
            self.seen.add(result.custom_id)
            if result.outcome != "succeeded":
                continue
            body = dict(result.body or {})
            body["model"] = self.native.requested_model  # Spine's name, as live answers
            usage = result.usage or Usage()
            await self._record(result.custom_id, usage, None)
            self.completed += 1
            rid = request_id(self.batch.id, result.custom_id)
            yield (result_line(result.custom_id, rid, 200, body) + "\n").encode()

    async def error_lines(
        self, results: AsyncIterator[LineResult], missing: list[str]
    ) -> AsyncIterator[bytes]:
        """The error file's lines: requests the provider refused (billed at no cost),
        then those that never ran; `missing`: input custom_ids the provider never
        answered for (they never ran)."""
        async for result in results:
            if result.outcome == "succeeded":
                continue
            if result.outcome == "errored":
                status = result.status_code or 500
                body = result.body or {}
                message = str((body.get("error") or {}).get("message") or "")
                await self._record(
                    result.custom_id, Usage(), LineError(status, message, result.error_code)
                )
                self.failed += 1
                rid = request_id(self.batch.id, result.custom_id)
                yield (result_line(result.custom_id, rid, status, body) + "\n").encode()
            else:
                yield (unrun_line(result.custom_id, *NOT_RUN[result.outcome]) + "\n").encode()
        unrun = NOT_RUN[
            "expired"
            if self.batch.expired_at
            else "cancelled"
            if self.batch.cancelling_at
            else "missing"
        ]
        for custom_id in missing:
            yield (unrun_line(custom_id, *unrun) + "\n").encode()

    async def _record(self, custom_id: str, usage: Usage, error: SpineError | None) -> None:
        cost = Decimal(0) if error is not None else cost_usd(self.pricing, usage)
        entry = UsageEntry(
            request_id=request_id(self.batch.id, custom_id),
            principal=owner_principal(self.batch),
            requested_model=self.native.requested_model,
            model_id=self.native.model_id,
            provider=self.native.provider,
            deployment=self.deployment,
            endpoint=CHAT.name,
            usage=usage,
            cost_usd=cost,
            latency_ms=0.0,  # the provider ran it offline: no latency of Spine's
            error=error,
            metadata={"batch_id": self.batch.id, "native_batch": self.native.provider_batch_id},
        )
        adjustments = [hold.adjustment(cost) for hold in self.native.holds] if cost else []
        # Raises when the database is away: the poll fails and runs again later.
        await write_spooled(self.database, SpooledUsage(usage_record(entry), tuple(adjustments)))
