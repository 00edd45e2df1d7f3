"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from spine.api.body import parse_body
from spine.api.cache_headers import cache_control
from spine.api.deps import CallContextDep
from spine.api.openapi import json_body
from spine.api.sse import EventStreamResponse
from spine.chat.service import CallResult, create_chat_completion, create_completion
from spine.chat.streaming import stream_chat_completion, stream_completion
from spine.schemas.openai import ChatCompletionRequest, CompletionRequest

router = APIRouter()


def call_headers(result: CallResult) -> dict[str, str]:
    """Which model, provider and deployment answered, and what it cost."""
    return {
        **stream_headers(result),
        "x-spine-cost-usd": f"{result.cost:.9f}",
        "openai-processing-ms": str(round(result.latency_ms)),
    }


def stream_headers(result: CallResult) -> dict[str, str]:
    """Who answers a stream; its cost is known only at the end (the usage row).
    `x-spine-fallback-from` names the requested model when a fallback answered."""
    headers = {
        "x-spine-model": result.resolved.entry.id,
        "x-spine-provider": result.target.provider.value,
        "x-spine-deployment": result.target.deployment,
    }
    if result.fallback_from is not None:
        headers["x-spine-fallback-from"] = result.fallback_from
    if result.cache is not None:  # only when the response cache took part
        headers["x-cache"] = result.cache
    return headers


@router.post("/v1/chat/completions", openapi_extra=json_body(ChatCompletionRequest))
async def chat_completions(request: Request, ctx: CallContextDep) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    if body.session_id is not None:
        # Imported here: only calls in a session pay for the session modules.
        from spine.api.session_chat import session_chat_completion

        return await session_chat_completion(body, ctx)
    cache = cache_control(request)
    if body.stream:
        stream = await stream_chat_completion(body, ctx, cache=cache)
        return EventStreamResponse(stream, stream_headers(stream.result))
    response, result = await create_chat_completion(body, ctx, cache=cache)
    return JSONResponse(response.model_dump(mode="json"), headers=call_headers(result))


@router.post("/v1/completions", openapi_extra=json_body(CompletionRequest))
async def completions(request: Request, ctx: CallContextDep) -> Response:
    body = await parse_body(request, CompletionRequest)
    cache = cache_control(request)
    if body.stream:
        stream = await stream_completion(body, ctx, cache=cache)
        return EventStreamResponse(stream, stream_headers(stream.result))
    response, result = await create_completion(body, ctx, cache=cache)
    return JSONResponse(response.model_dump(mode="json"), headers=call_headers(result))
