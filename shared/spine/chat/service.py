"""Chat and text completions: resolve the model, check the request, call the
provider, record one usage row. No HTTP here: callers get models or domain errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from spine.auth.principal import Principal
from spine.chat.params import (
    apply_defaults,
    check_chat_request,
    check_completion_request,
)
from spine.chat.targets import target_for
from spine.errors import InvalidRequestError, SpineError, UpstreamTimeoutError
from spine.observability import emit_metric, get_logger, trace_annotations
from spine.providers import get_provider
from spine.providers.base import Target
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import Capability
from spine.schemas.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    CompletionRequest,
    TextCompletion,
    Usage,
)
from spine.settings import Settings
from spine.usage.cost import cost_usd
from spine.usage.recorder import UsageEntry, UsageRecorder

logger = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class CallContext:
    request_id: str
    principal: Principal
    settings: Settings
    registry: Registry
    recorder: UsageRecorder
    # The stored prompt version this call runs (POST /v1/execute-prompt), recorded
    # in the usage row; None for plain chat calls.
    prompt_version_id: str | None = None


@dataclass
class CallResult:
    """What the HTTP layer needs besides the body: who answered, at what cost."""

    resolved: ResolvedModel
    target: Target
    cost: Decimal = Decimal(0)
    latency_ms: float = 0.0
    usage: Usage = field(default_factory=Usage)


async def create_chat_completion(
    request: ChatCompletionRequest, ctx: CallContext
) -> tuple[ChatCompletion, CallResult]:
    resolved = ctx.registry.resolve(request.model)
    provider = get_provider(resolved.entry.provider)
    effective = apply_defaults(request, resolved)
    check_chat_request(effective, resolved, provider.supported_params)
    target = target_for(resolved.entry, ctx.settings)
    async with _recorded_call(ctx, resolved, target, "chat.completions") as result:
        response = await _bounded(provider.chat(target, effective), target)
        result.usage = response.usage
    response.model = resolved.entry.id
    return response, result


async def create_completion(
    request: CompletionRequest, ctx: CallContext
) -> tuple[TextCompletion, CallResult]:
    resolved = ctx.registry.resolve(request.model)
    if not (
        resolved.entry.supports(Capability.COMPLETIONS) or resolved.entry.supports(Capability.CHAT)
    ):
        raise InvalidRequestError(
            f"Model '{request.model}' does not support completions.", param="model"
        )
    provider = get_provider(resolved.entry.provider)
    effective = apply_defaults(request, resolved)
    check_completion_request(effective, resolved, provider.supported_params)
    target = target_for(resolved.entry, ctx.settings)
    async with _recorded_call(ctx, resolved, target, "completions") as result:
        response = await _bounded(provider.complete(target, effective), target)
        result.usage = response.usage
    response.model = resolved.entry.id
    return response, result


async def _bounded(call: Awaitable[T], target: Target) -> T:
    """The model's total timeout bounds the call even if an SDK's own does not."""
    try:
        async with asyncio.timeout(target.timeouts.total):
            return await call
    except TimeoutError as exc:
        raise UpstreamTimeoutError(
            f"Model '{target.entry.id}' did not answer within {target.timeouts.total:g} s.",
            provider=target.provider.value,
        ) from exc


@asynccontextmanager
async def _recorded_call(
    ctx: CallContext, resolved: ResolvedModel, target: Target, endpoint: str
) -> AsyncIterator[CallResult]:
    """Time the provider call and write exactly one usage row, success or failure."""
    result = CallResult(resolved=resolved, target=target)
    started = time.perf_counter()
    error: SpineError | None = None
    try:
        yield result
    except SpineError as exc:
        error = exc
        raise
    finally:
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.cost = cost_usd(resolved.entry.pricing, result.usage)
        await ctx.recorder.record(
            UsageEntry(
                request_id=ctx.request_id,
                principal=ctx.principal,
                requested_model=resolved.requested,
                model_id=resolved.entry.id,
                provider=target.provider.value,
                deployment=target.deployment,
                endpoint=endpoint,
                usage=result.usage,
                cost_usd=result.cost,
                latency_ms=result.latency_ms,
                error=error,
                prompt_version_id=ctx.prompt_version_id,
            )
        )
        _emit_call_metrics(result, error)


def _emit_call_metrics(result: CallResult, error: SpineError | None) -> None:
    model = result.resolved.entry.id
    provider = result.target.provider.value
    emit_metric("Latency", result.latency_ms, "Milliseconds", model=model, provider=provider)
    if error is not None:
        emit_metric("Errors", 1, "Count", model=model, provider=provider, code=str(error.code))
        return
    emit_metric("InputTokens", result.usage.prompt_tokens, "Count", model=model)
    emit_metric("OutputTokens", result.usage.completion_tokens, "Count", model=model)
    emit_metric("CostMicroUSD", float(result.cost * 1_000_000), "Count", model=model)
    trace_annotations(model=model, provider=provider)
