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

from spine.errors import SpineError
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

    def _client(self, target: Target) -> genai.Client:
        if not target.api_key:
            raise missing_upstream_key(_PROVIDER, target.entry.id)
        return self._clients.get(
            target.base_url or GEMINI_BASE_URL, target.api_key, target.timeouts
        )

    async def chat(self, target: Target, request: ChatCompletionRequest) -> ChatCompletion:
        client = self._client(target)
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
            raise _map_error(exc) from exc
        if (blocked := mapping.prompt_block(raw)) is not None:
            raise blocked
        if not raw.candidates:
            raise upstream_bad_response(_PROVIDER, "no candidates and no block reason")
        return mapping.to_chat_completion(raw, target.model)

    async def chat_stream(
        self, target: Target, request: ChatCompletionRequest
    ) -> AsyncGenerator[dict[str, Any], None]:
        client = self._client(target)
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
                # Closed explicitly when this generator is: left to the garbage
                # collector, the SDK's stream (and its HTTP response) outlived a client
                # that went away, and the provider went on generating.
                close_stream = getattr(stream, "aclose", None)
            except _SDK_FAILURES as exc:
                raise _map_error(exc) from exc
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
            except _SDK_FAILURES as exc:
                raise _map_error(exc) from exc
            finally:
                if close_stream is not None:
                    await close_stream()
            if usage is None:
                raise upstream_bad_response(_PROVIDER, "the stream ended before any answer")
            reason: FinishReason = mapping.finish_reason(raw_finish, calls > 0)
            yield writer.finish(reason)
            yield writer.usage(usage)

        async with aclosing(guard_stream(_PROVIDER, target.timeouts, chunks())) as items:
            async for item in items:
                yield item

    async def aclose(self) -> None:
        await self._clients.aclose()


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


def _map_error(exc: Exception) -> SpineError:
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
