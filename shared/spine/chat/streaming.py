"""Streamed chat and text completions (`stream: true`).

The request goes through the same resolution, checks, retries and fallbacks as the
non-streaming path (`spine.chat.resilience`): the provider's stream is opened and its
first chunk awaited before anything is sent, so a failure up to there is retried or
falls back like any other, and ends as an ordinary error response. After that the caller
relays `CompletionStream.chunks()` and must call `aclose()` when done, however the
stream ended: exactly one usage row is written, for a finished stream, an upstream
failure mid-stream (status error) or a client that went away (the upstream call is
closed, so the provider stops generating). When the provider never reported usage
(a cut stream) the tokens are estimated from the text streamed so far and the row
says so in its metadata.

With the response cache (`spine.chat.cache`), a hit is replayed as the chunks of the
cached answer through the same `CompletionStream` (its usage row says cache hit, at
no provider cost), and a miss that finishes normally is assembled and kept, so a
later streamed or non-streamed request can hit.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Any, Literal

from spine.chat.cache import CacheControl, CacheHit, CachePlan, find, plan_cache
from spine.chat.cache_replay import StreamCapture, replay_chunks
from spine.chat.params import apply_defaults, check_chat_request, check_completion_request
from spine.chat.recording import emit_call_metrics
from spine.chat.resilience import Candidate, Served, serve
from spine.chat.service import CallContext, CallResult, cache_hit_result
from spine.errors import ClientDisconnectedError, InvalidRequestError, SpineError, UpstreamError
from spine.observability import get_logger
from spine.providers import get_provider
from spine.registry.resolve import ResolvedModel
from spine.registry.schema import Capability
from spine.schemas.openai import ChatCompletionRequest, CompletionRequest, Usage
from spine.usage.cost import cost_usd
from spine.usage.recorder import UsageEntry

logger = get_logger(__name__)

Endpoint = Literal["chat.completions", "completions"]
Chunk = dict[str, Any]

# Without the model's tokenizer: ~4 bytes of UTF-8 per token (English, on average).
_BYTES_PER_TOKEN = 4


async def stream_chat_completion(
    request: ChatCompletionRequest, ctx: CallContext, *, cache: CacheControl | None = None
) -> CompletionStream:
    resolved = ctx.registry.resolve(request.model)

    def prepare(model: ResolvedModel) -> ChatCompletionRequest:
        effective = apply_defaults(request, model)
        check_chat_request(effective, model, get_provider(model.entry.provider).supported_params)
        _require_streaming(model)
        return effective

    async def call(candidate: Candidate, effective: ChatCompletionRequest) -> CompletionStream:
        stream = CompletionStream(
            ctx,
            CallResult(resolved=candidate.resolved, target=candidate.target),
            "chat.completions",
            include_usage=_include_usage(effective),
            prompt_bytes=sum(len(m.text().encode()) for m in effective.messages),
        )
        provider = get_provider(candidate.resolved.entry.provider)
        await stream.open(provider.chat_stream(candidate.target, effective))
        return stream

    plan = plan_cache(ctx, resolved, "chat.completions", prepare, cache)
    if plan is not None and (hit := await find(ctx, resolved, plan)) is not None:
        return await _replay(ctx, resolved, hit, "chat.completions", _include_usage(request))
    served = await serve(ctx, resolved, "chat.completions", prepare, call)
    return _served_stream(served, ctx, plan)


async def stream_completion(
    request: CompletionRequest, ctx: CallContext, *, cache: CacheControl | None = None
) -> CompletionStream:
    resolved = ctx.registry.resolve(request.model)
    _require_completions(resolved, request.model)

    def prepare(model: ResolvedModel) -> CompletionRequest:
        _require_completions(model, request.model)
        effective = apply_defaults(request, model)
        supported = get_provider(model.entry.provider).supported_params
        check_completion_request(effective, model, supported)
        _require_streaming(model)
        return effective

    async def call(candidate: Candidate, effective: CompletionRequest) -> CompletionStream:
        stream = CompletionStream(
            ctx,
            CallResult(resolved=candidate.resolved, target=candidate.target),
            "completions",
            include_usage=_include_usage(effective),
            prompt_bytes=len(effective.prompt_text().encode()),
        )
        provider = get_provider(candidate.resolved.entry.provider)
        await stream.open(provider.complete_stream(candidate.target, effective))
        return stream

    plan = plan_cache(ctx, resolved, "completions", prepare, cache)
    if plan is not None and (hit := await find(ctx, resolved, plan)) is not None:
        return await _replay(ctx, resolved, hit, "completions", _include_usage(request))
    served = await serve(ctx, resolved, "completions", prepare, call)
    return _served_stream(served, ctx, plan)


def _served_stream(
    served: Served[CompletionStream], ctx: CallContext, plan: CachePlan | None
) -> CompletionStream:
    """The stream that opened, told about the failed attempts before it (its usage
    row, written when it ends, lists them) and, on a cache miss, set to keep its
    answer."""
    stream = served.value
    stream.result.fallback_from = served.fallback_from
    stream.metadata.update(served.metadata())
    if plan is not None:
        stream.result.cache = "MISS"
        if plan.write:
            stream.capture = StreamCapture(ctx, plan)
    return stream


async def _replay(
    ctx: CallContext,
    requested: ResolvedModel,
    hit: CacheHit,
    endpoint: Endpoint,
    include_usage: bool,
) -> CompletionStream:
    """A stream of the cached answer's chunks; nothing upstream is called."""
    stream = CompletionStream(
        ctx,
        cache_hit_result(requested, hit),
        endpoint,
        include_usage=include_usage,
        prompt_bytes=0,
        cache_hit=True,
    )
    stream.metadata.update(hit.usage_metadata())
    await stream.open(replay_chunks(hit.answer))
    return stream


def _require_streaming(resolved: ResolvedModel) -> None:
    if not resolved.entry.supports(Capability.STREAMING):
        raise InvalidRequestError(
            f"Model '{resolved.requested}' does not support streaming; send stream=false.",
            param="stream",
            code="unsupported_capability",
        )


def _include_usage(request: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool(request.stream_options and request.stream_options.include_usage)


def _require_completions(resolved: ResolvedModel, requested: str) -> None:
    entry = resolved.entry
    if not (entry.supports(Capability.COMPLETIONS) or entry.supports(Capability.CHAT)):
        raise InvalidRequestError(
            f"Model '{requested}' does not support completions.", param="model"
        )


class CompletionStream:
    """One streamed answer between the provider and the HTTP layer."""

    def __init__(
        self,
        ctx: CallContext,
        result: CallResult,
        endpoint: Endpoint,
        *,
        include_usage: bool,
        prompt_bytes: int,
        cache_hit: bool = False,
    ) -> None:
        self.ctx = ctx
        self.result = result
        self.endpoint: Endpoint = endpoint
        self.include_usage = include_usage
        self._prompt_bytes = prompt_bytes
        self._source: AsyncGenerator[Chunk, None] | None = None
        self._relay: AsyncGenerator[Chunk, None] | None = None
        self._first: Chunk | None = None
        self._usage: Usage | None = None
        self._streamed_bytes = 0
        self._started = time.perf_counter()
        self._first_chunk_ms: float | None = None
        self._recorded = False
        # Extra facts for the usage row (the failed attempts before this stream).
        self.metadata: dict[str, Any] = {}
        # A replay of a cached answer: its row costs nothing and says cache hit.
        self.cache_hit = cache_hit
        # Set on a cache miss whose answer should be kept once the stream finishes.
        self.capture: StreamCapture | None = None

    @property
    def model(self) -> str:
        return self.result.resolved.entry.id

    async def open(self, source: AsyncGenerator[Chunk, None]) -> None:
        """Start the upstream call and wait for its first chunk (bounded by the model's
        first-token timeout in the adapter). A `SpineError` before that is raised with
        the upstream call closed and nothing recorded: the caller may retry or fall
        back, and writes the request's usage row if it gives up."""
        self._source = source
        try:
            self._first = await anext(source)
        except StopAsyncIteration:
            self._recorded = True  # nothing to record: the caller owns the failure
            raise UpstreamError(
                f"Model '{self.model}' ended its stream without an answer.",
                provider=self.result.target.provider.value,
            ) from None
        except SpineError:
            self._recorded = True
            await self.aclose()
            raise
        except BaseException:
            await self.aclose()
            raise
        self._first_chunk_ms = (time.perf_counter() - self._started) * 1000

    def chunks(self) -> AsyncGenerator[Chunk, None]:
        """The chunks to send, in OpenAI's shape with Spine's model id. An upstream
        failure is raised as a `SpineError` after its usage row is written."""
        if self._relay is None:
            self._relay = self._chunks()
        return self._relay

    async def _chunks(self) -> AsyncGenerator[Chunk, None]:
        assert self._source is not None, "open() first"
        try:
            if self._first is not None:
                first, self._first = self._first, None
                if (out := self._observe(first)) is not None:
                    yield out
            async for chunk in self._source:
                if (out := self._observe(chunk)) is not None:
                    yield out
        except SpineError as exc:
            await self._record(exc)
            raise
        except Exception as exc:
            logger.exception("stream relay failed", extra={"model": self.model})
            error = SpineError("The server had an error while streaming the answer.")
            await self._record(error)
            raise error from exc
        await self._record(None)
        if self.capture is not None:
            await self.capture.store(self.result, self._usage)

    async def aclose(self) -> None:
        """End the stream: close the upstream call if it still runs (the SDK closes its
        HTTP response, so the provider or worker stops generating) and write the usage
        row if no outcome wrote it yet (the client went away). Idempotent."""
        for generator in (self._relay, self._source):
            if generator is not None:
                try:
                    await generator.aclose()
                except Exception:
                    logger.warning("closing the upstream stream failed", exc_info=True)
        if not self._recorded:
            await self._record(
                ClientDisconnectedError("The client closed the connection mid-stream.")
            )

    # --- internals ----------------------------------------------------------------------

    def _observe(self, chunk: Chunk) -> Chunk | None:
        """Note usage and streamed text; the chunk as the client should see it."""
        usage = chunk.get("usage")
        if usage:
            self._usage = Usage.model_validate(usage)
        if self.capture is not None:
            self.capture.add(chunk)
        for choice in chunk.get("choices") or []:
            self._streamed_bytes += len(_choice_text(choice).encode())
        if not chunk.get("choices") and usage and not self.include_usage:
            return None  # the usage-only chunk the client did not ask for
        out = {**chunk, "model": self.model}
        if not self.include_usage and "usage" in out:
            out["usage"] = None
        return out

    def _estimated_usage(self) -> Usage:
        prompt = math.ceil(self._prompt_bytes / _BYTES_PER_TOKEN)
        completion = math.ceil(self._streamed_bytes / _BYTES_PER_TOKEN)
        return Usage.of(prompt, completion)

    async def _record(self, error: SpineError | None) -> None:
        if self._recorded:
            return
        self._recorded = True
        result = self.result
        metadata: dict[str, Any] = {"stream": True, **self.metadata}
        if self._first_chunk_ms is not None:
            metadata["first_chunk_ms"] = round(self._first_chunk_ms, 3)
        if self._usage is not None:
            result.usage = self._usage
        elif self._first_chunk_ms is not None:
            # Cut before the provider's usage chunk: bill what was streamed.
            result.usage = self._estimated_usage()
            metadata["usage_estimated"] = True
        result.latency_ms = (time.perf_counter() - self._started) * 1000
        pricing = result.resolved.entry.pricing
        result.cost = Decimal(0) if self.cache_hit else cost_usd(pricing, result.usage)
        await self.ctx.recorder.record(
            UsageEntry(
                request_id=self.ctx.request_id,
                principal=self.ctx.principal,
                requested_model=result.resolved.requested,
                model_id=result.resolved.entry.id,
                provider=result.target.provider.value,
                deployment=result.target.deployment,
                endpoint=self.endpoint,
                usage=result.usage,
                cost_usd=result.cost,
                latency_ms=result.latency_ms,
                error=error,
                cache_hit=self.cache_hit,
                prompt_version_id=self.ctx.prompt_version_id,
                metadata=metadata,
            )
        )
        if self.cache_hit:
            return  # no provider was called: its latency and token metrics stay clean
        emit_call_metrics(
            result.resolved,
            result.target,
            usage=result.usage,
            cost=result.cost,
            latency_ms=result.latency_ms,
            error=error,
        )


def _choice_text(choice: dict[str, Any]) -> str:
    """Generated text of one chunk choice: chat content, tool-call arguments, or a
    text completion's text."""
    if "text" in choice:
        return str(choice.get("text") or "")
    delta = choice.get("delta") or {}
    parts = [str(delta.get("content") or ""), str(delta.get("refusal") or "")]
    for call in delta.get("tool_calls") or []:
        function = call.get("function") or {}
        parts += [str(function.get("name") or ""), str(function.get("arguments") or "")]
    return "".join(parts)
