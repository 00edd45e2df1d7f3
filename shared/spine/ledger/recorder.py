"""Write one usage row per provider call, and never lose one.

A failed write never fails the client's call (the provider already answered and
charged). It is retried once on a fresh connection (a restart or failover leaves
warm containers holding dead connections); if the database stays away, the row goes
to the spool (`spine.ledger.spool`) and is written from there once it is back. The
write is idempotent, so neither the retry nor the spool can bill a call twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from spine.auth.principal import Principal
from spine.errors import SpineError
from spine.ledger.spool import FileSpool, SpooledUsage, UsageSpool, keep
from spine.limits.admission import settlement
from spine.observability import get_logger
from spine.schemas.openai import Usage
from spine.storage.db import Connection, Database
from spine.storage.limits import settle, settle_and_record_usage, settle_and_record_usages
from spine.storage.usage import UsageRecord

if TYPE_CHECKING:
    from spine.limits.admission import Reservation
    from spine.storage.limits import Adjustment
    from spine.storage.usage import UsageRecord

logger = get_logger(__name__)


@dataclass(frozen=True)
class UsageEntry:
    request_id: str
    principal: Principal
    requested_model: str
    model_id: str
    provider: str
    deployment: str
    endpoint: str
    usage: Usage
    cost_usd: Decimal
    latency_ms: float
    error: SpineError | None = None
    cache_hit: bool = False
    prompt_version_id: str | None = None  # the prompt version that ran, if any
    # Extra facts about the call, e.g. {"usage_estimated": true} for a cut stream.
    metadata: Mapping[str, Any] = field(default_factory=dict)


class UsageRecorder(Protocol):
    async def record(self, entry: UsageEntry) -> None: ...


class PostgresUsageRecorder:
    def __init__(self, database: Database, spool: UsageSpool | None = None) -> None:
        self.database = database
        self.spool = spool
        # Whether a local spool may hold rows from earlier failures (file spools are
        # drained by the next write that succeeds; a queue by the maintenance job).
        self._maybe_spooled = isinstance(spool, FileSpool)

    async def record(self, entry: UsageEntry) -> None:
        await self.record_settling(entry, ())

    async def record_settling(self, entry: UsageEntry, adjustments: Sequence[Adjustment]) -> None:
        """Write the row and apply the rate-limit `adjustments` in one round trip;
        spool both when the database cannot take them."""

        item = row_now(entry, adjustments)
        try:
            await write_spooled(self.database, item)
        except Exception as exc:
            self.keep(item, exc)
            return
        if self._maybe_spooled:
            await self._drain_local()

    def keep(self, item: SpooledUsage, failure: BaseException) -> None:
        """Spool a row the database did not take."""
        if keep(self.spool, item, failure):
            self._maybe_spooled = True

    async def _drain_local(self) -> None:
        assert self.spool is not None
        try:
            report = await self.spool.drain(partial(write_spooled, self.database))
        except Exception:
            logger.warning("usage spool drain failed; rows stay spooled", exc_info=True)
            return
        self._maybe_spooled = False
        if report.written or report.already_there:
            logger.info("usage spool drained", extra=asdict(report))


class BufferedUsageRecorder:
    """Holds the rows of a group of calls (a batch's group of lines) and writes them
    together on `flush`: one round trip instead of one a row. Rows the database does
    not take go to `inner`'s spool, each, as `inner` would keep them."""

    def __init__(self, inner: PostgresUsageRecorder) -> None:
        self.inner = inner
        self.items: list[SpooledUsage] = []

    async def record(self, entry: UsageEntry) -> None:
        await self.record_settling(entry, ())

    async def record_settling(self, entry: UsageEntry, adjustments: Sequence[Adjustment]) -> None:
        self.items.append(row_now(entry, adjustments))

    async def flush(self) -> None:
        items, self.items = self.items, []
        if not items:
            return

        async def write(conn: Connection) -> None:
            await settle_and_record_usages(conn, [(i.adjustments, i.record) for i in items])

        try:
            await self.inner.database.run(write)
        except Exception as exc:
            for item in items:
                self.inner.keep(item, exc)


async def write_spooled(database: Database, item: SpooledUsage) -> bool:
    """Write a spooled (or live) row idempotently, reconnecting once if the
    connection turns out dead; True when the row is new to the ledger."""

    async def write(conn: Connection) -> bool:
        return await settle_and_record_usage(conn, item.adjustments, item.record)

    return await database.run(write)


def row_now(entry: UsageEntry, adjustments: Sequence[Adjustment]) -> SpooledUsage:
    """The call's row and settlement, stamped now: the time of the call, not of a
    later write (from the spool, or a group's flush)."""
    return SpooledUsage(
        replace(usage_record(entry), created_at=datetime.now(UTC)), tuple(adjustments)
    )


def usage_record(entry: UsageEntry) -> UsageRecord:

    error = entry.error
    return UsageRecord(
        request_id=entry.request_id,
        api_key_id=entry.principal.api_key_id,
        principal=entry.principal.subject,
        tenant=entry.principal.tenant,
        model=entry.requested_model,
        resolved_model=entry.model_id,
        provider=entry.provider,
        deployment=entry.deployment,
        endpoint=entry.endpoint,
        status="ok" if error is None else "error",
        http_status=200 if error is None else error.status_code,
        error_code=None if error is None else error.code,
        prompt_tokens=entry.usage.prompt_tokens,
        completion_tokens=entry.usage.completion_tokens,
        cached_tokens=entry.usage.cached_tokens,
        reasoning_tokens=entry.usage.completion_tokens_details.reasoning_tokens,
        cost_usd=entry.cost_usd,
        latency_ms=round(entry.latency_ms, 3),
        cache_hit=entry.cache_hit,
        prompt_version_id=entry.prompt_version_id,
        metadata=entry.metadata,
    )


class SettlingRecorder:
    """Settles the request's rate-limit reservation (estimated tokens and cost) to
    each call's real usage, then records the call with `inner`.

    Wraps the recorder the chat service already calls for every provider call, so
    settlement needs no change to the chat code. With the Postgres recorder the
    settlement and the usage row are one statement (one round trip). A failed write
    is logged; it never fails the call.
    """

    def __init__(self, inner: UsageRecorder, reservation: Reservation, database: Database) -> None:
        self.inner = inner
        self.reservation = reservation
        self.database = database

    async def record(self, entry: UsageEntry) -> None:

        usage = entry.usage
        # A response-cache hit used no provider tokens: its estimate is given back
        # (the request itself still counts against requests per minute).
        tokens = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
        adjustments = settlement(
            self.reservation, tokens=0 if entry.cache_hit else tokens, cost_usd=entry.cost_usd
        )
        if isinstance(self.inner, (PostgresUsageRecorder, BufferedUsageRecorder)):
            await self.inner.record_settling(entry, adjustments)
            return
        await _settle_alone(self.database, adjustments, entry.request_id)
        await self.inner.record(entry)


async def _settle_alone(
    database: Database, adjustments: Sequence[Adjustment], request_id: str
) -> None:
    try:
        await settle(await database.connection(), adjustments)
    except Exception:
        # The estimate stays counted until its window ends: the safe side.
        logger.exception("rate limit settlement failed", extra={"request_id": request_id})
