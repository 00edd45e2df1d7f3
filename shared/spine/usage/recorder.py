"""Write one usage row per provider call.

A failed write never fails the client's call (the provider already answered and
charged); it is logged and counted as a metric so an operator sees the gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from spine.auth.principal import Principal
from spine.errors import SpineError
from spine.observability import emit_metric, get_logger
from spine.schemas.openai import Usage

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
    async def record(self, entry: UsageEntry) -> None:
        from spine.storage import db
        from spine.storage.usage import UsageRecord, record_usage

        error = entry.error
        row = UsageRecord(
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
        try:
            conn = await db.connection()
            await record_usage(conn, row)
        except Exception:
            logger.exception("usage write failed", extra={"request_id": entry.request_id})
            emit_metric("UsageWriteFailures", 1, "Count")
