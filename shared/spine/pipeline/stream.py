"""One streamed answer (`stream: true`) between the provider and the HTTP layer.

`spine.pipeline.run.stream` opens it: the provider's stream is opened and its first
chunk awaited before anything is sent, so a failure up to there is retried or falls
back like any other and ends as an ordinary error response. After that the caller
relays `CompletionStream.chunks()` and must call `aclose()` when done, however the
stream ended: exactly one usage row is written, for a finished stream, an upstream
failure mid-stream (status error) or a client that went away (the upstream call is
closed, so the provider stops generating). When the provider never reported usage
(a cut stream) the tokens are estimated from the text streamed so far and the row
says so in its metadata. A response-cache hit is replayed through the same class
(its row says cache hit, at no provider cost); a miss that finishes normally is
assembled and kept (`capture`).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator
from typing import Any

from spine.errors import ClientDisconnectedError, SpineError, UpstreamError
from spine.observability import get_logger
from spine.pipeline.cache_replay import StreamCapture
from spine.pipeline.context import CallContext, CallResult
from spine.pipeline.recording import record_call
from spine.schemas.openai import Usage

logger = get_logger(__name__)

Chunk = dict[str, Any]

# Without the model's tokenizer: ~4 bytes of UTF-8 per token (English, on average).
_BYTES_PER_TOKEN = 4


class StreamMeter:
    """What a stream's relay reads from its chunks (the usage the provider reported,
    the bytes generated so far) and how each chunk reaches the client. This one is for
    OpenAI's chunks (chat and text completions); an endpoint that streams another
    shape (Anthropic's events, the Responses API's) brings its own subclass."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.streamed_bytes = 0

    def shape(self, chunk: Chunk) -> Chunk | None:
        """Note usage and streamed text; the chunk as the client should see it (None:
        not sent)."""
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.model_validate(usage)
        for choice in chunk.get("choices") or []:
            self.streamed_bytes += len(_choice_text(choice).encode())
        if not chunk.get("choices") and usage and not self.include_usage:
            return None  # the usage-only chunk the client did not ask for
        out = {**chunk, "model": self.model}
        if not self.include_usage and "usage" in out:
            out["usage"] = None
        return out


class CompletionStream:
    """One streamed answer between the provider and the HTTP layer."""

    def __init__(
        self,
        ctx: CallContext,
        result: CallResult,
        endpoint: str,
        *,
        meter: StreamMeter,
        prompt_bytes: int,
        cache_hit: bool = False,
    ) -> None:
        self.ctx = ctx
        self.result = result
        self.endpoint = endpoint
        self.meter = meter
        self._prompt_bytes = prompt_bytes
        self._source: AsyncGenerator[Chunk, None] | None = None
        self._relay: AsyncGenerator[Chunk, None] | None = None
        self._first: Chunk | None = None
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
            await self.capture.store(self.result, self.meter.usage)

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
        if self.capture is not None:
            self.capture.add(chunk)
        return self.meter.shape(chunk)

    def _estimated_usage(self) -> Usage:
        prompt = math.ceil(self._prompt_bytes / _BYTES_PER_TOKEN)
        completion = math.ceil(self.meter.streamed_bytes / _BYTES_PER_TOKEN)
        return Usage.of(prompt, completion)

    async def _record(self, error: SpineError | None) -> None:
        if self._recorded:
            return
        self._recorded = True
        result = self.result
        metadata: dict[str, Any] = {"stream": True, **self.metadata}
        if self._first_chunk_ms is not None:
            metadata["first_chunk_ms"] = round(self._first_chunk_ms, 3)
        if self.meter.usage is not None:
            result.usage = self.meter.usage
        elif self._first_chunk_ms is not None:
            # Cut before the provider's usage chunk: bill what was streamed.
            result.usage = self._estimated_usage()
            metadata["usage_estimated"] = True
        result.latency_ms = (time.perf_counter() - self._started) * 1000
        result.cost = await record_call(
            self.ctx,
            result.resolved,
            result.target,
            self.endpoint,
            usage=result.usage,
            latency_ms=result.latency_ms,
            error=error,
            metadata=metadata,
            cache_hit=self.cache_hit,
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


class WrappedStream:
    """A service's relay around a `CompletionStream` (a session's turn stored at its
    end, a response stored before its last event): what
    `spine.api.sse.EventStreamResponse` relays (model, chunks(), aclose()), the
    service's own work in `_relay_chunks`."""

    def __init__(self, inner: CompletionStream) -> None:
        self.inner = inner
        self._relay: AsyncGenerator[Chunk, None] | None = None

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def result(self) -> CallResult:
        return self.inner.result

    def chunks(self) -> AsyncGenerator[Chunk, None]:
        if self._relay is None:
            self._relay = self._relay_chunks()
        return self._relay

    async def aclose(self) -> None:
        if self._relay is not None:
            await self._relay.aclose()
        await self.inner.aclose()

    def _relay_chunks(self) -> AsyncGenerator[Chunk, None]:
        raise NotImplementedError
