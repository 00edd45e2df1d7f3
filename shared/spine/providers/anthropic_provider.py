"""Anthropic's Messages API through the `anthropic` SDK (optional extra).

This module imports `anthropic` at the top; `spine.providers.get_provider` imports it
only when a request needs it and turns a missing SDK into a clear 503. Conversions
live in `anthropic_mapping`.

temperature/top_p/seed are not offered: API version 2026-10-21 (what SDK 2.x sends)
rejects every sampling parameter with a 400, and the SDK no longer has them, so the
chat service refuses them up front with a clear message.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anthropic
import httpx2
from anthropic.types import Message

from spine.errors import SpineError
from spine.providers import anthropic_mapping as mapping
from spine.providers.base import ChatProvider, Target
from spine.providers.convert import COMMON_PARAMS
from spine.providers.errors import (
    from_upstream_status,
    missing_upstream_key,
    upstream_bad_response,
    upstream_timeout,
    upstream_unreachable,
)
from spine.providers.runtime import ClientCache, guard_stream, within_deadline
from spine.registry.schema import ProviderKind, Timeouts
from spine.schemas.openai import ChatCompletion, ChatCompletionRequest

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
_PROVIDER = ProviderKind.ANTHROPIC.value
# The SDK wraps transport errors of the request, but not of a stream being read.
_SDK_FAILURES = (anthropic.AnthropicError, httpx2.TransportError, json.JSONDecodeError)


# --- provider --------------------------------------------------------------------------


class AnthropicProvider(ChatProvider):
    kind = ProviderKind.ANTHROPIC
    speaks_anthropic = True
    supported_params = COMMON_PARAMS | {
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
    }

    def __init__(self) -> None:
        self._clients: ClientCache[anthropic.AsyncAnthropic] = ClientCache(
            _new_client, _close_client
        )

    def client(self, target: Target) -> anthropic.AsyncAnthropic:
        """The SDK client for `target` (shared with the native batch adapter)."""
        if not target.api_key:
            raise missing_upstream_key(_PROVIDER, target.entry.id)
        return self._clients.get(
            target.base_url or ANTHROPIC_BASE_URL, target.api_key, target.timeouts
        )

    async def chat(self, target: Target, request: ChatCompletionRequest) -> ChatCompletion:
        client = self.client(target)
        params = mapping.to_params(target, request)
        try:
            message = await within_deadline(
                _PROVIDER, target.timeouts.total, client.messages.create(**params)
            )
        except _SDK_FAILURES as exc:
            raise map_error(exc) from exc
        if not isinstance(message, Message):
            raise upstream_bad_response(_PROVIDER, "expected a JSON message")
        return mapping.to_chat_completion(message)

    async def chat_stream(
        self, target: Target, request: ChatCompletionRequest
    ) -> AsyncGenerator[dict[str, Any], None]:
        client = self.client(target)
        params = mapping.to_params(target, request)

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            try:
                stream = await client.messages.create(**params, stream=True)
                async with stream:
                    translator = mapping.StreamTranslator()
                    async for event in stream:
                        for chunk in translator.feed(event):
                            yield chunk
            except _SDK_FAILURES as exc:
                raise map_error(exc) from exc

        async with aclosing(guard_stream(_PROVIDER, target.timeouts, chunks())) as items:
            async for item in items:
                yield item

    # --- the Messages API as it came (POST /v1/messages for Claude models) -------------
    # The body goes as `extra_body`, untouched by the SDK's typed parameters, so every
    # field and block the client sent reaches Anthropic; answers are relayed as their
    # JSON (`to_dict` keeps exactly the fields the API sent).

    async def messages(
        self, target: Target, body: dict[str, Any], betas: str | None
    ) -> dict[str, Any]:
        client = self.client(target)
        try:
            message = await within_deadline(
                _PROVIDER,
                target.timeouts.total,
                client.messages.create(**_native(body, betas)),
            )
        except _SDK_FAILURES as exc:
            raise map_error(exc) from exc
        if not isinstance(message, Message):
            raise upstream_bad_response(_PROVIDER, "expected a JSON message")
        return message.to_dict(mode="json")

    async def messages_stream(
        self, target: Target, body: dict[str, Any], betas: str | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        client = self.client(target)
        params = _native(body, betas)

        async def events() -> AsyncIterator[dict[str, Any]]:
            try:
                stream = await client.messages.create(**params, stream=True)
                finished = False
                async with stream:
                    async for event in stream:
                        finished = event.type == "message_stop"
                        yield event.to_dict(mode="json")
            except _SDK_FAILURES as exc:
                raise map_error(exc) from exc
            if not finished:  # relayed as it came: a cut stream must not look whole
                raise upstream_bad_response(_PROVIDER, "the stream ended before message_stop")

        async with aclosing(guard_stream(_PROVIDER, target.timeouts, events())) as items:
            async for item in items:
                yield item

    async def count_message_tokens(self, target: Target, body: dict[str, Any]) -> int:
        client = self.client(target)
        rest = {k: v for k, v in body.items() if k not in ("model", "messages")}
        try:
            counted = await within_deadline(
                _PROVIDER,
                target.timeouts.total,
                client.messages.count_tokens(
                    model=body["model"], messages=body["messages"], extra_body=rest
                ),
            )
        except _SDK_FAILURES as exc:
            raise map_error(exc) from exc
        return counted.input_tokens

    async def aclose(self) -> None:
        await self._clients.aclose()


def _native(body: dict[str, Any], betas: str | None) -> dict[str, Any]:
    """The SDK's arguments for a Messages body: its three required fields by name,
    everything else as it came."""
    rest = {k: v for k, v in body.items() if k not in ("model", "messages", "max_tokens")}
    params: dict[str, Any] = {
        "model": body["model"],
        "messages": body["messages"],
        "max_tokens": body["max_tokens"],
        "extra_body": rest,
    }
    if betas:
        params["extra_headers"] = {"anthropic-beta": betas}
    return params


def _new_client(base_url: str, api_key: str, timeouts: Timeouts) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,  # retries and fallbacks are Spine's
        timeout=anthropic.Timeout(timeouts.total, connect=timeouts.connect),
    )


async def _close_client(client: anthropic.AsyncAnthropic) -> None:
    await client.close()


def map_error(exc: Exception) -> SpineError:
    if isinstance(exc, anthropic.APITimeoutError):
        return upstream_timeout(_PROVIDER)
    if isinstance(exc, anthropic.APIConnectionError):
        return upstream_unreachable(_PROVIDER, str(exc.__cause__ or exc))
    if isinstance(exc, httpx2.TimeoutException):
        return upstream_timeout(_PROVIDER)
    if isinstance(exc, httpx2.TransportError):
        return upstream_unreachable(_PROVIDER, str(exc) or type(exc).__name__)
    if isinstance(exc, anthropic.APIStatusError):
        # Anthropic's body: {"type": "error", "error": {"type": ..., "message": ...}}
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return from_upstream_status(
            _PROVIDER,
            exc.status_code,
            message if isinstance(message, str) else exc.message,
            headers=exc.response.headers,
        )
    if isinstance(exc, anthropic.APIResponseValidationError | json.JSONDecodeError):
        return upstream_bad_response(_PROVIDER, str(exc))
    if isinstance(exc, anthropic.APIError):
        # An `error` event inside a stream (e.g. overloaded_error after the 200).
        return from_upstream_status(_PROVIDER, 500, exc.message)
    return upstream_unreachable(_PROVIDER, str(exc))
