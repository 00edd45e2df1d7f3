"""Gemini's batch mode (Developer API) through the `google-genai` SDK's async client.

Each line becomes an inlined GenerateContent request built as the chat adapter
builds a live one (`gemini_mapping.to_contents` / `to_config`), its custom_id in the
request's metadata (`key`); results come back inlined in the batch job and are
translated the way live answers are (`to_chat_completion`). Inlined requests take at
most 20 MB in all (Gemini's limit): a larger batch runs queued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import IO, Any, Literal

from google.genai import errors as genai_errors
from google.genai import types

from spine.errors import SpineError, error_body
from spine.providers import gemini_mapping as mapping
from spine.providers.base import Target
from spine.providers.errors import from_upstream_status
from spine.providers.gemini import GeminiProvider, map_error
from spine.providers.native_batch.base import (
    LineResult,
    NativeBatchApi,
    NotNative,
    ProviderBatch,
    chat_adapter,
)
from spine.registry.schema import ProviderKind
from spine.schemas.openai import ChatCompletionRequest

_PROVIDER = ProviderKind.GEMINI.value
INLINE_LIMIT_BYTES = 20 * 1024 * 1024
_RUNNING = {"JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"}
_ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
# google.rpc.Code of a failed request -> the HTTP status Gemini answers it with.
_HTTP_STATUS = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400, 13: 500, 14: 503, 16: 401}


class BatchApi(NativeBatchApi):
    def __init__(self) -> None:
        self.chat = chat_adapter(ProviderKind.GEMINI, GeminiProvider)

    def request_line(
        self, target: Target, custom_id: str, request: ChatCompletionRequest
    ) -> dict[str, Any]:
        contents, system = mapping.to_contents(request.messages)
        config = mapping.to_config(request, system)
        # Client-side settings of the SDK's own loop: nothing a batch request carries.
        config.automatic_function_calling = None
        config.automatic_continuation = None
        inlined = types.InlinedRequest(
            model=target.model, contents=contents, config=config, metadata={"key": custom_id}
        )
        return inlined.model_dump(mode="json", exclude_none=True)

    async def submit(self, target: Target, lines: IO[bytes], count: int) -> ProviderBatch:
        size = 0
        requests = []
        for line in lines:
            size += len(line)
            if size > INLINE_LIMIT_BYTES:
                raise NotNative("more than Gemini's 20 MB of inlined batch requests")
            requests.append(types.InlinedRequest.model_validate_json(line))
        try:
            job = await self.chat.client(target).aio.batches.create(
                model=target.model, src=requests
            )
        except genai_errors.APIError as exc:
            raise map_error(exc) from exc
        return _seen(job)

    async def status(self, target: Target, batch_id: str) -> ProviderBatch:
        return _seen(await self._job(target, batch_id))

    async def results(self, target: Target, batch_id: str) -> AsyncIterator[LineResult]:
        job = await self._job(target, batch_id)
        for item in (job.dest.inlined_responses if job.dest else None) or []:
            yield _result(item, target.model)

    async def cancel(self, target: Target, batch_id: str) -> None:
        try:
            await self.chat.client(target).aio.batches.cancel(name=batch_id)
        except genai_errors.APIError as exc:
            raise map_error(exc) from exc

    async def _job(self, target: Target, batch_id: str) -> types.BatchJob:
        try:
            return await self.chat.client(target).aio.batches.get(name=batch_id)
        except genai_errors.APIError as exc:
            raise map_error(exc) from exc


def _seen(job: types.BatchJob) -> ProviderBatch:
    status = job.state.value if job.state is not None else "JOB_STATE_UNSPECIFIED"
    state: Literal["running", "ended", "failed"] = "failed"
    if status in _RUNNING:
        state = "running"
    elif status in _ENDED:
        state = "ended"
    return ProviderBatch(
        id=job.name or "",
        status=status,
        state=state,
        expired=status == "JOB_STATE_EXPIRED",
        message=(job.error.message or "") if job.error else "",
    )


def _result(item: types.InlinedResponse, model: str) -> LineResult:
    custom_id = (item.metadata or {}).get("key", "")
    raw = item.response
    if item.error is None and raw is not None:
        blocked = mapping.prompt_block(raw)
        if blocked is None:
            answer = mapping.to_chat_completion(raw, model)
            body = answer.model_dump(mode="json", exclude_none=True)
            return LineResult(custom_id, "succeeded", 200, body, answer.usage)
        refusal: SpineError = blocked
    else:
        code = item.error.code if item.error and item.error.code is not None else 13
        message = (item.error.message if item.error else None) or "no answer"
        refusal = from_upstream_status(_PROVIDER, _HTTP_STATUS.get(code, 500), message)
    body = error_body(refusal.message, refusal.error_type, refusal.param, refusal.code)
    return LineResult(custom_id, "errored", refusal.status_code, body, error_code=refusal.code)
