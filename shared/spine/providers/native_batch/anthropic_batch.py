"""Anthropic's Message Batches API through the `anthropic` SDK (optional extra).

Each line becomes a request `{custom_id, params}` whose params are exactly what the
chat adapter sends for that request (`anthropic_mapping.to_params`); each result is
translated back the way a live answer is (`to_chat_completion`), and a per-request
error to OpenAI's error body with the status the live path would give it.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import IO, Any

import anthropic
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from spine.errors import error_body
from spine.providers import anthropic_mapping as mapping
from spine.providers.anthropic_provider import AnthropicProvider, map_error
from spine.providers.base import Target
from spine.providers.errors import from_upstream_status
from spine.providers.native_batch.base import (
    LineResult,
    NativeBatchApi,
    NotNative,
    ProviderBatch,
    chat_adapter,
)
from spine.registry.schema import ProviderKind
from spine.schemas.openai import ChatCompletionRequest

# What the API takes as a custom_id (OpenAI's may be longer and hold any character).
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PROVIDER = ProviderKind.ANTHROPIC.value
# Anthropic's error types and the HTTP status each comes with (its errors page).
_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class BatchApi(NativeBatchApi):
    def __init__(self) -> None:
        self.chat = chat_adapter(ProviderKind.ANTHROPIC, AnthropicProvider)

    def request_line(
        self, target: Target, custom_id: str, request: ChatCompletionRequest
    ) -> dict[str, Any]:
        if not _CUSTOM_ID.match(custom_id):
            raise NotNative(
                f"custom_id '{custom_id[:64]}' is not one Anthropic takes (1 to 64 of "
                "A-Z, a-z, 0-9, _ and -)"
            )
        return {"custom_id": custom_id, "params": mapping.to_params(target, request)}

    async def submit(self, target: Target, lines: IO[bytes], count: int) -> ProviderBatch:
        # The API takes the requests in one JSON body (up to 256 MB), so they are
        # read into memory here; the SDK serializes them once more.
        requests = [json.loads(line) for line in lines if line.strip()]
        try:
            batch = await self.chat.client(target).messages.batches.create(requests=requests)
        except anthropic.AnthropicError as exc:
            raise map_error(exc) from exc
        return _seen(batch)

    async def status(self, target: Target, batch_id: str) -> ProviderBatch:
        try:
            batch = await self.chat.client(target).messages.batches.retrieve(batch_id)
        except anthropic.AnthropicError as exc:
            raise map_error(exc) from exc
        return _seen(batch)

    async def results(self, target: Target, batch_id: str) -> AsyncIterator[LineResult]:
        try:
            decoder = await self.chat.client(target).messages.batches.results(batch_id)
            async for item in decoder:
                yield _result(item)
        except anthropic.AnthropicError as exc:
            raise map_error(exc) from exc

    async def cancel(self, target: Target, batch_id: str) -> None:
        try:
            await self.chat.client(target).messages.batches.cancel(batch_id)
        except anthropic.AnthropicError as exc:
            raise map_error(exc) from exc


def _seen(batch: MessageBatch) -> ProviderBatch:
    counts = batch.request_counts
    return ProviderBatch(
        id=batch.id,
        status=batch.processing_status,
        state="ended" if batch.processing_status == "ended" else "running",
        succeeded=counts.succeeded,
        errored=counts.errored,
        expired=counts.expired > 0,
    )


def _result(item: MessageBatchIndividualResponse) -> LineResult:
    result = item.result
    if result.type == "succeeded":
        answer = mapping.to_chat_completion(result.message)
        return LineResult(
            item.custom_id,
            "succeeded",
            200,
            answer.model_dump(mode="json", exclude_none=True),
            answer.usage,
        )
    if result.type == "errored":
        error = result.error.error
        status = _STATUS.get(error.type, 500)
        spine_error = from_upstream_status(_PROVIDER, status, error.message)
        body = error_body(
            spine_error.message, spine_error.error_type, spine_error.param, spine_error.code
        )
        return LineResult(
            item.custom_id, "errored", spine_error.status_code, body, error_code=spine_error.code
        )
    return LineResult(item.custom_id, "cancelled" if result.type == "canceled" else "expired")
