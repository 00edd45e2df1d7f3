"""Google Gemini (Developer API) through the `google-genai` SDK's async client.

The conversions live in `gemini_mapping`; this module owns the client, the calls and
the errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx2
import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from spine.errors import InvalidRequestError, SpineError
from spine.providers import gemini_mapping as mapping
from spine.providers.base import ChatProvider, Target
from spine.providers.convert import COMMON_PARAMS, ChunkWriter
from spine.providers.errors import (
    from_upstream_status,
    missing_upstream_key,
    upstream_bad_response,
    upstream_timeout,
    upstream_unreachable,
)
from spine.providers.runtime import ClientCache, guard_stream, within_deadline
from spine.registry.schema import ProviderKind, Timeouts
from spine.schemas.embeddings import (
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    float32_base64,
)
from spine.schemas.openai import ChatCompletion, ChatCompletionRequest, FinishReason, Usage

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/"
_PROVIDER = ProviderKind.GEMINI.value
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")
# What the SDK lets through: its own API errors, and the transport's errors (httpx2's
# timeouts are TransportErrors too) and parse errors unwrapped. A streamed line that
# is not JSON comes as UnknownApiResponseError (a ValueError, not an APIError).
_SDK_FAILURES = (
    genai_errors.APIError,
    genai_errors.UnknownApiResponseError,
    httpx2.TransportError,
    json.JSONDecodeError,
    pydantic.ValidationError,
)


class GeminiProvider(ChatProvider):
    # batchEmbedContents takes at most 100 requests.
    max_embedding_inputs = 100
    kind = ProviderKind.GEMINI
    supported_params = COMMON_PARAMS | {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "response_format",
    }

    def __init__(self) -> None:
        self._clients: ClientCache[genai.Client] = ClientCache(_new_client, _close_client)

    def client(self, target: Target) -> genai.Client:
        """The SDK client for `target` (shared with the native batch adapter)."""
        if not target.api_key:
            raise missing_upstream_key(_PROVIDER, target.entry.id)
        return self._clients.get(*_client_key(target))

    async def chat(self, target: Target, request: ChatCompletionRequest) -> ChatCompletion:
        client = self.client(target)
        contents, system = mapping.to_contents(request.messages)
        config = mapping.to_config(request, system)
        try:
            raw = await within_deadline(
                _PROVIDER,
                target.timeouts.total,
                client.aio.models.generate_content(
                    model=target.model, contents=contents, config=config
                ),
            )
        except _SDK_FAILURES as exc:
            raise map_error(exc) from exc
        if (blocked := mapping.prompt_block(raw)) is not None:
            raise blocked
        if not raw.candidates:
            raise upstream_bad_response(_PROVIDER, "no candidates and no block reason")
        return mapping.to_chat_completion(raw, target.model)

    async def chat_stream(
        self, target: Target, request: ChatCompletionRequest
    ) -> AsyncGenerator[dict[str, Any], None]:
        client = self.client(target)
        contents, system = mapping.to_contents(request.messages)
        config = mapping.to_config(request, system)

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            writer = ChunkWriter(model=target.model)
            usage: Usage | None = None
            raw_finish: types.FinishReason | None = None
            calls = 0
            try:
                stream = await client.aio.models.generate_content_stream(
                    model=target.model, contents=contents, config=config
                )
                close_stream = getattr(stream, "aclose", None)
            except _SDK_FAILURES as exc:
                raise map_error(exc) from exc
            finished = False
            try:
                async for raw in stream:
                    if (blocked := mapping.prompt_block(raw)) is not None:
                        raise blocked
                    if usage is None:  # the first chunk
                        writer.model = raw.model_version or writer.model
                        yield writer.role()
                    # Gemini repeats cumulative usage on chunks; the last one is final.
                    usage = mapping.to_usage(raw.usage_metadata)
                    candidate = raw.candidates[0] if raw.candidates else None
                    text, tool_calls = mapping.answer_parts(candidate)
                    if text:
                        yield writer.content(text)
                    for call in tool_calls:
                        # Gemini sends each call whole, never in pieces.
                        yield writer.tool_call(
                            calls,
                            call_id=call.id,
                            name=call.function.name,
                            arguments=call.function.arguments,
                        )
                        calls += 1
                    if candidate is not None and candidate.finish_reason is not None:
                        raw_finish = candidate.finish_reason
                finished = True
            except _SDK_FAILURES as exc:
                raise map_error(exc) from exc
            finally:
                if not finished:
                    await self._abandon(target, close_stream)
            if usage is None:
                raise upstream_bad_response(_PROVIDER, "the stream ended before any answer")
            reason: FinishReason = mapping.finish_reason(raw_finish, calls > 0)
            yield writer.finish(reason)
            yield writer.usage(usage)

        async with aclosing(guard_stream(_PROVIDER, target.timeouts, chunks())) as items:
            async for item in items:
                yield item

    async def embed(self, target: Target, request: EmbeddingRequest) -> EmbeddingResponse:
        """google-genai's embed_content. Gemini reports no token counts for embeddings:
        the usage row is estimated from the inputs' size (about 4 bytes a token)."""
        if not isinstance(request.input, str) and not all(
            isinstance(item, str) for item in request.input
        ):
            raise InvalidRequestError(
                "Gemini embeds text: send 'input' as a string or a list of strings.",
                param="input",
            )
        client = self.client(target)
        texts = request.texts()
        config = types.EmbedContentConfig(output_dimensionality=request.dimensions)
        try:
            answer = await within_deadline(
                _PROVIDER,
                target.timeouts.total,
                client.aio.models.embed_content(model=target.model, contents=texts, config=config),
            )
        except _SDK_FAILURES as exc:
            raise map_error(exc) from exc
        vectors = [list(e.values or []) for e in answer.embeddings or []]
        if len(vectors) != len(texts):
            raise upstream_bad_response(_PROVIDER, "not one embedding per input")
        tokens = sum(max(1, -(-len(text.encode()) // 4)) for text in texts)
        base64 = request.encoding_format == "base64"
        return EmbeddingResponse(
            data=[
                Embedding(index=i, embedding=float32_base64(v) if base64 else v)
                for i, v in enumerate(vectors)
            ],
            model=target.model,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def _abandon(self, target: Target, close_stream: Any) -> None:
        """Stop an SDK stream left before its end (the client went away), so the
        provider stops generating. Closing google-genai's stream leaves the generators
        it nests, which hold the HTTP response, to the garbage collector, which may
        not get to them for a long time: the client, and so the connection, is
        closed instead (a container serves one request at a time; the next call
        makes a new client)."""
        if close_stream is not None:
            await close_stream()
        await self._clients.discard(*_client_key(target))

    async def aclose(self) -> None:
        await self._clients.aclose()


def _client_key(target: Target) -> tuple[str, str, Timeouts]:
    return (target.base_url or GEMINI_BASE_URL, str(target.api_key), target.timeouts)


def _new_client(base_url: str, api_key: str, timeouts: Timeouts) -> genai.Client:
    return genai.Client(
        vertexai=False,  # never flipped by GOOGLE_GENAI_USE_VERTEXAI in the environment
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=base_url,
            api_version="v1beta",
            # Milliseconds, one value for connect and read; `within_deadline` bounds
            # the whole call by `total` anyway.
            timeout=int(timeouts.total * 1000),
            # One attempt: retries and fallbacks are Spine's.
            retry_options=types.HttpRetryOptions(attempts=1),
            # httpx always: the SDK switches to aiohttp whenever aiohttp is importable
            # (another package may bring it), and its errors and streams differ; a
            # transport of our own pins the client this adapter maps and tests.
            async_client_args={"transport": httpx2.AsyncHTTPTransport()},
        ),
    )


async def _close_client(client: genai.Client) -> None:
    await client.aio.aclose()


# --- errors ----------------------------------------------------------------------------


def _error_details(exc: genai_errors.APIError) -> list[dict[str, Any]]:
    body = exc.details
    if isinstance(body, dict):
        body = body.get("error", body)
    details = body.get("details") if isinstance(body, dict) else None
    return [d for d in details or [] if isinstance(d, dict)]


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """Gemini puts its wait in the body (`google.rpc.RetryInfo`, "retryDelay": "37s")."""
    for detail in details:
        match = _DURATION.match(str(detail.get("retryDelay", "")))
        if match:
            return float(match[1])
    return None


def map_error(exc: Exception) -> SpineError:
    if isinstance(exc, genai_errors.APIError):
        details = _error_details(exc)
        status = exc.code
        # A bad key is a 400 INVALID_ARGUMENT with reason API_KEY_INVALID on Gemini.
        if status == 400 and any(d.get("reason") == "API_KEY_INVALID" for d in details):
            status = 401
        headers = exc.response.headers if exc.response is not None else None
        return from_upstream_status(
            _PROVIDER,
            status,
            exc.message or str(exc),
            code=exc.status.lower() if exc.status else None,
            headers=headers,
            retry_after=_retry_delay(details),
        )
    if isinstance(exc, httpx2.TimeoutException):
        return upstream_timeout(_PROVIDER)
    if isinstance(exc, httpx2.TransportError):
        return upstream_unreachable(_PROVIDER, str(exc) or type(exc).__name__)
    return upstream_bad_response(_PROVIDER, str(exc))
