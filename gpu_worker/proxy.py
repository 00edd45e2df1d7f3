"""Forward OpenAI-style requests to a model's engine, holding a scheduler slot meanwhile.

The body passes through untouched (every sampling field llama-server knows: top_k,
min_p, mirostat, grammar, json_schema, logit_bias, ...) except for these changes:
- `model` becomes the registry id;
- streams ask for usage in the final chunk (`stream_options.include_usage`);
- `max_tokens` defaults to the entry's `max_output_tokens` (llama-server's own default
  is "until the context is full");
- a request with a `seed` gets `cache_prompt: false` unless it sets `cache_prompt`.
  Why: llama-server reuses the KV cache of a previous prompt in the slot and then only
  evaluates the new suffix, and its docs warn that logits are not bit-for-bit identical
  across batch sizes (prompt processing vs. generation) on every backend. Evaluating the
  whole prompt each time makes "same seed + same prompt -> same text" hold.

Engine failures mid-request become 502 `engine_failed` errors (for streams an SSE
`event: error` then `data: [DONE]`), and the supervisor restarts the engine. When the
client goes away mid-stream, the upstream response is closed, which makes llama-server
cancel the generation and free the slot.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gpu_worker.engine import Engine
from gpu_worker.errors import EngineFailedError, body_of
from gpu_worker.metrics import WorkerMetrics
from gpu_worker.scheduler import Priority, Ticket
from gpu_worker.supervisor import ManagedModel, ModelManager
from spine.errors import (
    ContextWindowExceededError,
    InvalidRequestError,
    SpineError,
    UpstreamError,
    UpstreamTimeoutError,
)

logger = logging.getLogger(__name__)

_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "n_predict")


def prepare_body(body: dict[str, Any], model: ManagedModel, endpoint: str) -> dict[str, Any]:
    """Validate what the worker must know, and apply the changes listed above."""
    out = dict(body)
    out["model"] = model.id
    stream = out.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequestError("'stream' must be a boolean", param="stream")
    if endpoint == "embeddings":
        if "input" not in out:
            raise InvalidRequestError("Missing required parameter: 'input'", param="input")
        return out
    if endpoint == "chat" and (not isinstance(out.get("messages"), list) or not out["messages"]):
        raise InvalidRequestError("'messages' must be a non-empty array", param="messages")
    if endpoint == "completions" and "prompt" not in out:
        raise InvalidRequestError("Missing required parameter: 'prompt'", param="prompt")
    context = model.config.context_size
    present = [f for f in _TOKEN_FIELDS if out.get(f) is not None]
    for name in present:
        value = out[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequestError(
                f"Invalid value for '{name}': expected an integer >= 1, got {value!r}", param=name
            )
        if value > context:
            raise ContextWindowExceededError(
                f"'{name}' is {value}, but the model's context is {context} tokens", param=name
            )
    if not present and model.entry.max_output_tokens:
        out["max_tokens"] = min(model.entry.max_output_tokens, context)
    if stream:
        options = out.get("stream_options")
        out["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    if out.get("seed") is not None and "cache_prompt" not in out:
        out["cache_prompt"] = False
    return out


def _usage_only(event: bytes) -> bool:
    """A `data:` event carrying usage and no choices (the final usage chunk)."""
    if b'"usage"' not in event:
        return False
    for line in event.splitlines():
        if line.startswith(b"data: {"):
            try:
                chunk = json.loads(line[len(b"data: ") :])
            except ValueError:
                return False
            return isinstance(chunk, dict) and bool(chunk.get("usage")) and not chunk.get("choices")
    return False


def engine_error(response: httpx.Response) -> SpineError:
    """An engine's non-200 reply as a domain error (4xx stay the caller's fault)."""
    try:
        error = response.json().get("error", {})
        message = str(error.get("message") or response.text)
        kind = error.get("type")
    except (ValueError, AttributeError):
        message, kind = response.text or f"HTTP {response.status_code}", None
    if kind == "exceed_context_size_error":
        return ContextWindowExceededError(message, param="messages")
    if 400 <= response.status_code < 500 or response.status_code == 501:
        return InvalidRequestError(message, code=str(kind) if kind else None)
    return UpstreamError(f"The engine failed: {message}", provider="llamacpp")


def sse_error(exc: SpineError) -> bytes:
    payload = json.dumps(body_of(exc))
    return f"event: error\ndata: {payload}\n\ndata: [DONE]\n\n".encode()


class ProxiedStream(StreamingResponse):
    """A StreamingResponse that always runs `on_close`, even when the client left before
    the first byte (then the body iterator never starts and its `finally` never runs)."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]]):
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._on_close()


class Proxy:
    def __init__(self, manager: ModelManager, metrics: WorkerMetrics) -> None:
        self.manager = manager
        self.metrics = metrics
        # Admission already bounds concurrency per engine; the pool must not add a cap.
        # llama-server drops idle keep-alive connections after 5 s: expire ours sooner,
        # so a request rarely lands on a connection the engine is closing.
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=64, keepalive_expiry=2.0
            ),
            timeout=httpx.Timeout(120.0, connect=5.0),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def handle(
        self,
        *,
        model: ManagedModel,
        endpoint: str,
        body: dict[str, Any],
        priority: Priority,
        user: str,
        actor: str,
    ) -> Response:
        arrived = time.monotonic()
        # The worker always asks the engine for usage (its metrics need it); a client
        # that did not ask gets no usage-only chunk (OpenAI sends none then).
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        payload = prepare_body(body, model, endpoint)
        try:
            ticket = await model.scheduler.acquire(priority, user)
        except SpineError:
            self.metrics.rejected.labels(model.id).inc()
            raise
        self.manager.touch(model)
        handed_over = False
        try:
            engine = await self.manager.ensure_ready(model, actor)
            path = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}.get(
                endpoint, "/v1/embeddings"
            )
            limits = httpx.Timeout(model.entry.timeouts.total, connect=model.entry.timeouts.connect)
            if payload.get("stream"):
                response = await self._stream(
                    model,
                    engine,
                    path,
                    payload,
                    limits=limits,
                    ticket=ticket,
                    arrived=arrived,
                    wants_usage=wants_usage,
                )
                handed_over = True
                return response
            return await self._once(model, engine, path, payload, limits)
        finally:
            if not handed_over:
                ticket.release()
                self.manager.touch(model)

    async def _once(
        self, model: ManagedModel, engine: Engine, path: str, payload: dict[str, Any],
        limits: httpx.Timeout,
    ) -> Response:  # fmt: skip
        request = self.client.build_request(
            "POST", engine.base_url + path, json=payload, timeout=limits
        )
        try:
            response = await self._send(request, engine, stream=False)
        except httpx.HTTPError as exc:
            raise await self.transport_error(model, engine, exc) from exc
        if response.status_code != 200:
            raise engine_error(response)
        data = response.json()
        self.metrics.record_usage(model.id, data.get("usage") if isinstance(data, dict) else None)
        return JSONResponse(data)

    async def _stream(
        self, model: ManagedModel, engine: Engine, path: str, payload: dict[str, Any], *,
        limits: httpx.Timeout, ticket: Ticket, arrived: float, wants_usage: bool,
    ) -> Response:  # fmt: skip
        request = self.client.build_request(
            "POST", engine.base_url + path, json=payload, timeout=limits
        )
        try:
            upstream = await self._send(request, engine, stream=True)
        except httpx.HTTPError as exc:
            raise await self.transport_error(model, engine, exc) from exc
        if upstream.status_code != 200:
            await upstream.aread()
            await upstream.aclose()
            raise engine_error(upstream)

        async def close() -> None:
            # Closing the upstream connection is what tells llama-server to stop.
            await upstream.aclose()
            ticket.release()
            self.manager.touch(model)

        relay = self._relay(model, engine, upstream, arrived, wants_usage=wants_usage)
        return ProxiedStream(relay, close)

    async def _relay(
        self,
        model: ManagedModel,
        engine: Engine,
        upstream: httpx.Response,
        arrived: float,
        *,
        wants_usage: bool,
    ) -> AsyncIterator[bytes]:
        """Forward the engine's bytes as they arrive, untouched, but for the usage-only
        chunk of a client that did not ask for usage (it is left out).

        No per-line decode and re-encode: on a CPU host the worker shares cores with
        the engine, and every cycle spent here is one the engine does not get. Events
        are only split (in C, `bytes.split`) to find the one carrying usage.
        """
        first = True
        pending = b""  # bytes after the last complete event
        try:
            async for chunk in upstream.aiter_raw():
                if first:
                    first = False
                    self.metrics.ttft.labels(model.id).observe(time.monotonic() - arrived)
                pending += chunk
                if b"\n\n" not in pending:
                    if wants_usage:
                        yield chunk
                    continue
                *events, pending = pending.split(b"\n\n")
                dropped = False
                for event in events:
                    if b'"usage"' in event:
                        usage_only = self._record_stream_usage(model, event)
                        dropped = dropped or (usage_only and not wants_usage)
                if wants_usage:
                    yield chunk
                elif events:
                    # Whole events only: the usage-only one left out.
                    kept = [e for e in events if not _usage_only(e)] if dropped else events
                    if kept:
                        yield b"\n\n".join(kept) + b"\n\n"
            if not wants_usage and pending:
                yield pending
        except httpx.HTTPError as exc:
            yield sse_error(await self.transport_error(model, engine, exc))
        # No `finally: close()` here: on a client disconnect this generator is cancelled
        # and an await in its `finally` would be cancelled too. ProxiedStream closes the
        # upstream once, shielded, on every path.

    async def _send(
        self, request: httpx.Request, engine: Engine, *, stream: bool
    ) -> httpx.Response:
        """Send, retrying once when a pooled keep-alive connection turned out to be closed.

        "Disconnected without sending a response" on a live engine means the engine closed
        an idle connection as we reused it; the request never reached it, so resending is
        safe. A dead engine fails the retry too, and then counts as failed.
        """
        try:
            return await self.client.send(request, stream=stream)
        except httpx.RemoteProtocolError as exc:
            if not engine.running or "without sending a response" not in str(exc):
                raise
            logger.info("engine closed an idle connection, resending", extra={"pid": engine.pid})
            return await self.client.send(request, stream=stream)

    def _record_stream_usage(self, model: ManagedModel, event: bytes) -> bool:
        """Record the event's usage; whether it is a usage-only chunk (no choices)."""
        usage_only = False
        for line in event.splitlines():
            if not line.startswith(b"data: {"):
                continue
            try:
                chunk = json.loads(line[len(b"data: ") :])
            except ValueError:
                continue
            if isinstance(chunk, dict) and chunk.get("usage"):
                self.metrics.record_usage(model.id, chunk["usage"])
                usage_only = usage_only or not chunk.get("choices")
        return usage_only

    async def transport_error(
        self, model: ManagedModel, engine: Engine, exc: httpx.HTTPError
    ) -> SpineError:
        """An engine call that got no answer, as a domain error. A broken connection may
        mean the engine died: the supervisor then restarts it."""
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeoutError(
                f"The engine for '{model.id}' did not answer in time", provider="llamacpp"
            )
        logger.warning(
            "engine connection failed",
            extra={"model": model.id, "pid": engine.pid, "error": type(exc).__name__},
        )
        await self.manager.engine_failed(model, engine)
        return EngineFailedError(
            f"The engine for '{model.id}' failed while handling the request "
            f"({type(exc).__name__}); it is being restarted, retry the request",
            provider="llamacpp",
        )
