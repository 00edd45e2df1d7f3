"""The one usage row (and metrics) of a client request.

One row per request, not per attempt: `request_id` is unique in the ledger, and a
failed attempt carries no billable tokens (the provider answered with an error). The
row names the model that answered (or the last one tried); its metadata lists the
attempts when there was more than one, so retries and fallbacks stay visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from spine.errors import SpineError
from spine.ledger.cost import cost_usd
from spine.ledger.recorder import UsageEntry
from spine.observability import emit_metric, trace_annotations
from spine.pipeline.context import CallContext
from spine.providers.base import Target
from spine.registry.resolve import ResolvedModel
from spine.schemas.openai import Usage


async def record_call(
    ctx: CallContext,
    resolved: ResolvedModel,
    target: Target,
    endpoint: str,
    *,
    usage: Usage,
    latency_ms: float,
    error: SpineError | None,
    metadata: Mapping[str, Any] | None = None,
    cache_hit: bool = False,
) -> Decimal:
    """Write the request's usage row and emit its metrics; the cost in USD (none for an
    answer from the response cache, whose row carries the cached tokens)."""
    cost = Decimal(0) if cache_hit else cost_usd(resolved.entry.pricing, usage)
    await ctx.recorder.record(
        UsageEntry(
            request_id=ctx.request_id,
            principal=ctx.principal,
            requested_model=resolved.requested,
            model_id=resolved.entry.id,
            provider=target.provider.value,
            deployment=target.deployment,
            endpoint=endpoint,
            usage=usage,
            cost_usd=cost,
            latency_ms=latency_ms,
            error=error,
            cache_hit=cache_hit,
            prompt_version_id=ctx.prompt_version_id,
            metadata=dict(metadata or {}),
        )
    )
    if not cache_hit:  # no provider was called: its latency and token metrics stay clean
        emit_call_metrics(
            resolved, target, usage=usage, cost=cost, latency_ms=latency_ms, error=error
        )
    return cost


def emit_call_metrics(
    resolved: ResolvedModel,
    target: Target,
    *,
    usage: Usage,
    cost: Decimal,
    latency_ms: float,
    error: SpineError | None,
) -> None:
    model = resolved.entry.id
    provider = target.provider.value
    emit_metric("Latency", latency_ms, "Milliseconds", model=model, provider=provider)
    if error is not None:
        emit_metric("Errors", 1, "Count", model=model, provider=provider, code=str(error.code))
        return
    emit_metric("InputTokens", usage.prompt_tokens, "Count", model=model)
    emit_metric("OutputTokens", usage.completion_tokens, "Count", model=model)
    emit_metric("CostMicroUSD", float(cost * 1_000_000), "Count", model=model)
    trace_annotations(model=model, provider=provider)
