"""The one sequence every model call runs, for every endpoint kind (`kinds.py`), as a
JSON answer or a stream:

1. the requested model, resolved once (at admission: `CallContext.resolved`);
2. the response cache (`cache.py`): a hit answers without any provider call;
3. the serving chain (`chain.py`): deployments in the router's order, retries with
   backoff, fallbacks, cooldowns; the kind prepares and checks the request for each
   member before it is called;
4. the provider call through the kind (JSON, or a stream opened to its first chunk);
5. exactly one usage row (`recording.py`), settling the rate-limit reservation, and a
   cacheable answer kept.

No HTTP here: callers get answers, streams or domain errors.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import Any

from spine.errors import InvalidRequestError, SpineError
from spine.pipeline.cache import (
    CacheControl,
    CacheHit,
    CachePlan,
    find,
    plan_cache,
    record_hit,
    store_answer,
)
from spine.pipeline.cache_replay import StreamCapture, replay_chunks
from spine.pipeline.chain import Candidate, Served, Serving
from spine.pipeline.context import CallContext, CallResult
from spine.pipeline.kinds import AnswerT, EndpointKind, RequestT
from spine.pipeline.recording import record_call
from spine.pipeline.stream import CompletionStream
from spine.registry.resolve import ResolvedModel
from spine.schemas.openai import ChatCompletion, SamplingParams, TextCompletion


async def answer(
    kind: EndpointKind[RequestT, AnswerT],
    request: RequestT,
    ctx: CallContext,
    *,
    cache: CacheControl | None = None,
) -> tuple[AnswerT, CallResult]:
    """The whole answer, from the response cache or the serving chain, with its usage
    row written."""
    started = time.perf_counter()
    resolved = ctx.resolve(_model_of(request))
    plan = _plan(kind, request, ctx, resolved, cache, streaming=False)
    hit = None if plan is None else await find(ctx, resolved, plan)
    if hit is not None and (cache is None or cache.fit(hit.answer)):
        assert isinstance(hit.answer, kind.answer_type)
        result = cache_hit_result(resolved, hit)
        result.latency_ms = (time.perf_counter() - started) * 1000
        await record_hit(ctx, hit, kind.name, latency_ms=result.latency_ms, stream=False)
        return hit.answer, result
    serving = Serving(ctx, kind, request, resolved, streaming=False)
    served: Served[AnswerT] | None = None
    async with aclosing(serving.attempts()) as attempts:
        async for attempt in attempts:
            try:
                value = await kind.call(attempt.candidate.target, attempt.request)
            except SpineError as exc:
                attempt.fail(exc)
                continue
            served = serving.served(attempt, value)
            dropped = attempt.request.dropped_params
            break
    assert served is not None  # the attempts raise when nothing could serve it
    response = served.value
    result = _result_of(served)
    result.dropped_params = dropped
    result.usage = kind.usage(response)
    result.latency_ms = (time.perf_counter() - started) * 1000
    result.cost = await record_call(
        ctx,
        result.resolved,
        result.target,
        kind.name,
        usage=result.usage,
        latency_ms=result.latency_ms,
        error=None,
        metadata=served.metadata(),
    )
    response.model = result.resolved.entry.id
    if plan is not None and isinstance(response, ChatCompletion | TextCompletion):
        result.cache = "MISS"
        if cache is not None and not cache.fit(response):
            return response, result
        await store_answer(
            ctx,
            plan,
            response,
            provider=result.target.provider.value,
            deployment=result.target.deployment,
        )
    return response, result


async def stream(
    kind: EndpointKind[RequestT, Any],
    request: RequestT,
    ctx: CallContext,
    *,
    cache: CacheControl | None = None,
) -> CompletionStream:
    """The answer as a stream, opened to its first chunk (a failure up to there is
    retried or falls back like a JSON call's); the caller relays it and closes it,
    which writes its usage row."""
    resolved = ctx.resolve(_model_of(request))
    plan = _plan(kind, request, ctx, resolved, cache, streaming=True)
    if plan is not None and (hit := await find(ctx, resolved, plan)) is not None:
        return await _replay(kind, request, ctx, resolved, hit)
    serving = Serving(ctx, kind, request, resolved, streaming=True)
    served: Served[CompletionStream] | None = None
    async with aclosing(serving.attempts()) as attempts:
        async for attempt in attempts:
            candidate, effective = attempt.candidate, attempt.request
            opened = CompletionStream(
                ctx,
                CallResult(resolved=candidate.resolved, target=candidate.target),
                kind.name,
                meter=kind.stream_meter(candidate.resolved.entry.id, effective),
                prompt_bytes=kind.prompt_bytes(effective),
            )
            try:
                await opened.open(kind.open_stream(candidate.target, effective))
            except SpineError as exc:
                attempt.fail(exc)
                continue
            served = serving.served(attempt, opened)
            opened.result.dropped_params = effective.dropped_params
            break
    assert served is not None
    opened = served.value
    # The failed attempts before it go in its usage row, written when it ends.
    opened.result.fallback_from = served.fallback_from
    opened.metadata.update(served.metadata())
    if plan is not None:
        opened.result.cache = "MISS"
        if plan.write:
            opened.capture = StreamCapture(ctx, plan)
    return opened


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


def _plan(
    kind: EndpointKind[RequestT, Any],
    request: RequestT,
    ctx: CallContext,
    resolved: ResolvedModel,
    control: CacheControl | None,
    *,
    streaming: bool,
) -> CachePlan | None:
    """The cache's part, keyed on the request as the requested model receives it. A
    request that model refuses is left to the chain (another deployment may take it,
    or the chain reports the refusal): it is never looked up."""
    if resolved.cache_ttl <= 0 or not kind.cacheable:
        return None
    try:
        effective = kind.prepare(request, resolved, streaming)
    except InvalidRequestError:
        return None
    if not isinstance(effective, SamplingParams):
        return None  # only sampled answers (chat, completions) are cached
    return plan_cache(ctx, resolved, kind.name, effective, control)


async def _replay(
    kind: EndpointKind[RequestT, Any],
    request: RequestT,
    ctx: CallContext,
    requested: ResolvedModel,
    hit: CacheHit,
) -> CompletionStream:
    """A stream of the cached answer's chunks; nothing upstream is called."""
    replay = CompletionStream(
        ctx,
        cache_hit_result(requested, hit),
        kind.name,
        meter=kind.stream_meter(hit.resolved.entry.id, request),
        prompt_bytes=0,
        cache_hit=True,
    )
    replay.metadata.update(hit.usage_metadata())
    await replay.open(replay_chunks(hit.answer))
    return replay


def _result_of(served: Served[Any]) -> CallResult:
    candidate: Candidate = served.candidate
    return CallResult(
        resolved=candidate.resolved,
        target=candidate.target,
        fallback_from=served.fallback_from,
    )


def _model_of(request: Any) -> str:
    model: str = request.model
    return model
