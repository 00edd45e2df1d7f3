"""OpenAI's Batch API through the `openai` SDK: the requests as a JSONL file
(`files.create`, purpose `batch`), then `batches.create`; results from the batch's
output and error files, streamed line by line. The lines are already in OpenAI's
batch format, so a result is read back as it came; only the usage is taken out.

The chat adapter (`OpenAIProvider`) lends its pooled client, its request body and
its error mapping, so a native line is sent exactly what a live call would send.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import IO, Any, Literal

import openai
from openai.types import CompletionUsage

from spine.errors import SpineError
from spine.providers.base import Target
from spine.providers.native_batch.base import (
    LineResult,
    NativeBatchApi,
    ProviderBatch,
    chat_adapter,
)
from spine.providers.openai_provider import OpenAIProvider, normalize_usage
from spine.registry.schema import ProviderKind
from spine.schemas.openai import ChatCompletionRequest

_ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
_RUNNING = {"validating", "in_progress", "finalizing", "cancelling"}


class BatchApi(NativeBatchApi):
    def __init__(self) -> None:
        self.chat = chat_adapter(ProviderKind.OPENAI, OpenAIProvider)

    def request_line(
        self, target: Target, custom_id: str, request: ChatCompletionRequest
    ) -> dict[str, Any]:
        body = self.chat.chat_params(target, request)
        extra = body.pop("extra_body", None) or {}
        return {"custom_id": custom_id, "method": "POST", "url": _ENDPOINT, "body": body | extra}

    async def submit(self, target: Target, lines: IO[bytes], count: int) -> ProviderBatch:
        client = self.chat.client(target)
        try:
            uploaded = await client.files.create(file=("batch.jsonl", lines), purpose="batch")
            batch = await client.batches.create(
                input_file_id=uploaded.id, endpoint=_ENDPOINT, completion_window="24h"
            )
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        return _seen(batch)

    async def status(self, target: Target, batch_id: str) -> ProviderBatch:
        try:
            batch = await self.chat.client(target).batches.retrieve(batch_id)
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        return _seen(batch)

    async def results(self, target: Target, batch_id: str) -> AsyncIterator[LineResult]:
        client = self.chat.client(target)
        try:
            batch = await client.batches.retrieve(batch_id)
            for file_id in (batch.output_file_id, batch.error_file_id):
                if not file_id:
                    continue
                async with client.files.with_streaming_response.content(file_id) as content:
                    async for line in content.iter_lines():
                        if line.strip():
                            yield _result(json.loads(line))
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc

    async def cancel(self, target: Target, batch_id: str) -> None:
        try:
            await self.chat.client(target).batches.cancel(batch_id)
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> SpineError:
        return self.chat.map_error(exc)


def _seen(batch: Any) -> ProviderBatch:
    counts = batch.request_counts
    state: Literal["running", "ended", "failed"]
    if batch.status in _RUNNING:
        state = "running"
    elif batch.status == "failed":
        state = "failed"
    else:  # completed, expired, cancelled: results to read
        state = "ended"
    errors = [e.message or e.code or "" for e in (batch.errors.data or [])] if batch.errors else []
    return ProviderBatch(
        id=batch.id,
        status=batch.status,
        state=state,
        succeeded=counts.completed if counts else 0,
        errored=counts.failed if counts else 0,
        expired=batch.status == "expired",
        message="; ".join(str(e) for e in errors if e)[:500],
    )


def _result(line: dict[str, Any]) -> LineResult:
    """A line of OpenAI's output or error file."""
    custom_id = str(line["custom_id"])
    response = line.get("response")
    if response is None:  # never ran: OpenAI's batch_expired or batch_cancelled
        unrun = (line.get("error") or {}).get("code")
        return LineResult(custom_id, "cancelled" if unrun == "batch_cancelled" else "expired")
    status = int(response["status_code"])
    body = response.get("body") or {}
    if status == 200:
        usage = (
            normalize_usage(CompletionUsage.model_validate(body["usage"]))
            if body.get("usage")
            else None
        )
        return LineResult(custom_id, "succeeded", status, body, usage)
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return LineResult(custom_id, "errored", status, body, error_code=code)
