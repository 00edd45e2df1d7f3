"""Chat and text completions: resolve the model, check the request, answer from the
response cache when it holds the answer (`spine.chat.cache`), else call the provider
(with retries and fallbacks, see `spine.chat.resilience`) and keep a cacheable answer;
record one usage row. No HTTP here: callers get models or domain errors."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from spine.auth.principal import Principal
from spine.chat.cache import (
    CacheControl,
    CacheHit,
    CachePlan,
    CacheStatus,
    find,
    plan_cache,
    record_hit,
    store_answer,
)
from spine.chat.params import (
    apply_defaults,
    check_chat_request,
    check_completion_request,
)
from spine.chat.recording import record_call
from spine.chat.resilience import Candidate, Served, serve
from spine.errors import InvalidRequestError
from spine.observability import get_logger
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
from spine.usage.recorder import UsageRecorder

logger = get_logger(__name__)

R = TypeVar("R", ChatCompletionRequest, CompletionRequest)  # what a model is called with
A = TypeVar("A", ChatCompletion, TextCompletion)  # the answer


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
    # The model the client asked for, when a fallback answered instead.
    fallback_from: str | None = None
    # HIT or MISS when the response cache took part in the request, else None.
    cache: CacheStatus | None = None


async def create_chat_completion(
    request: ChatCompletionRequest, ctx: CallContext, *, cache: CacheControl | None = None
) -> tuple[ChatCompletion, CallResult]:
    resolved = ctx.registry.resolve(request.model)

    def prepare(model: ResolvedModel) -> ChatCompletionRequest:
        effective = apply_defaults(request, model)
        check_chat_request(effective, model, get_provider(model.entry.provider).supported_params)
        return effective

    async def call(candidate: Candidate, effective: ChatCompletionRequest) -> ChatCompletion:
        provider = get_provider(candidate.resolved.entry.provider)
        return await provider.chat(candidate.target, effective)

    return await _answer(
        ctx, resolved, "chat.completions", prepare, call, cache=cache, answer_type=ChatCompletion
    )


async def create_completion(
    request: CompletionRequest, ctx: CallContext, *, cache: CacheControl | None = None
) -> tuple[TextCompletion, CallResult]:
    resolved = ctx.registry.resolve(request.model)
    _require_completions(resolved, request.model)

    def prepare(model: ResolvedModel) -> CompletionRequest:
        _require_completions(model, request.model)
        effective = apply_defaults(request, model)
        supported = get_provider(model.entry.provider).supported_params
        check_completion_request(effective, model, supported)
        return effective

    async def call(candidate: Candidate, effective: CompletionRequest) -> TextCompletion:
        provider = get_provider(candidate.resolved.entry.provider)
        return await provider.complete(candidate.target, effective)

    return await _answer(
        ctx, resolved, "completions", prepare, call, cache=cache, answer_type=TextCompletion
    )


async def _answer(
    ctx: CallContext,
    resolved: ResolvedModel,
    endpoint: str,
    prepare: Callable[[ResolvedModel], R],
    call: Callable[[Candidate, R], Awaitable[A]],
    *,
    cache: CacheControl | None,
    answer_type: type[A],
) -> tuple[A, CallResult]:
    """From the response cache when it holds the answer; else through the chain
    (retries, fallbacks), with its usage row, kept in the cache when planned."""
    started = time.perf_counter()
    plan = plan_cache(ctx, resolved, endpoint, prepare, cache)
    if plan is not None and (hit := await find(ctx, resolved, plan)) is not None:
        assert isinstance(hit.answer, answer_type)
        return hit.answer, await _answered_from_cache(ctx, resolved, hit, plan, started)
    served = await serve(ctx, resolved, endpoint, prepare, call)
    response = served.value
    result = await _record_success(ctx, served, response.usage, endpoint, started)
    response.model = result.resolved.entry.id
    if plan is not None:
        result.cache = "MISS"
        await _keep(ctx, plan, response, result)
    return response, result


def _require_completions(resolved: ResolvedModel, requested: str) -> None:
    entry = resolved.entry
    if not (entry.supports(Capability.COMPLETIONS) or entry.supports(Capability.CHAT)):
        raise InvalidRequestError(
            f"Model '{requested}' does not support completions.", param="model"
        )


async def _record_success(
    ctx: CallContext, served: Served[Any], usage: Usage, endpoint: str, started: float
) -> CallResult:
    """The request's one usage row, for the model that answered; latency includes
    the retries and fallbacks before it."""
    candidate = served.candidate
    result = CallResult(
        resolved=candidate.resolved,
        target=candidate.target,
        usage=usage,
        fallback_from=served.fallback_from,
    )
    result.latency_ms = (time.perf_counter() - started) * 1000
    result.cost = await record_call(
        ctx,
        candidate.resolved,
        candidate.target,
        endpoint,
        usage=usage,
        latency_ms=result.latency_ms,
        error=None,
        metadata=served.metadata(),
    )
    return result


def cache_hit_result(requested: ResolvedModel, hit: CacheHit) -> CallResult:
    """Who gave the cached answer (a fallback, maybe), at no provider cost."""
    answered = hit.resolved.entry.id
    return CallResult(
        resolved=hit.resolved,
        target=hit.target,
        usage=hit.usage,
        fallback_from=requested.entry.id if answered != requested.entry.id else None,
        cache="HIT",
    )


async def _answered_from_cache(
    ctx: CallContext, requested: ResolvedModel, hit: CacheHit, plan: CachePlan, started: float
) -> CallResult:
    result = cache_hit_result(requested, hit)
    result.latency_ms = (time.perf_counter() - started) * 1000
    await record_hit(ctx, hit, plan.endpoint, latency_ms=result.latency_ms, stream=False)
    return result


async def _keep(
    ctx: CallContext, plan: CachePlan, answer: ChatCompletion | TextCompletion, result: CallResult
) -> None:
    await store_answer(
        ctx,
        plan,
        answer,
        provider=result.target.provider.value,
        deployment=result.target.deployment,
    )
