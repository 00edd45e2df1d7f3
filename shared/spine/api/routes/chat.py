"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from spine.api.body import parse_body
from spine.api.deps import CallContextDep
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
    return headers


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, ctx: CallContextDep) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    if body.stream:
        stream = await stream_chat_completion(body, ctx)
        return EventStreamResponse(stream, stream_headers(stream.result))
    response, result = await create_chat_completion(body, ctx)
    return JSONResponse(response.model_dump(mode="json"), headers=call_headers(result))


@router.post("/v1/completions")
async def completions(request: Request, ctx: CallContextDep) -> Response:
    body = await parse_body(request, CompletionRequest)
    if body.stream:
        stream = await stream_completion(body, ctx)
        return EventStreamResponse(stream, stream_headers(stream.result))
    response, result = await create_completion(body, ctx)
    return JSONResponse(response.model_dump(mode="json"), headers=call_headers(result))
