"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from spine.api.answer_headers import call_headers, stream_headers
from spine.api.body import parse_body
from spine.api.cache_headers import cache_control
from spine.api.deps import CallContextDep
from spine.api.openapi import EVENT_STREAM_ANSWER, json_body
from spine.api.sse import EventStreamResponse
from spine.pipeline import run
from spine.pipeline.kinds import CHAT, COMPLETIONS
from spine.schemas.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    CompletionRequest,
    TextCompletion,
)

router = APIRouter()


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=EVENT_STREAM_ANSWER,
    openapi_extra=json_body(ChatCompletionRequest),
)
async def chat_completions(request: Request, ctx: CallContextDep) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    if body.session_id is not None:
        from spine.api.session_chat import (  # noqa: PLC0415 - only calls in a session load the session modules
            session_chat_completion,
        )

        return await session_chat_completion(body, ctx)
    cache = cache_control(request)
    if body.stream:
        stream = await run.stream(CHAT, body, ctx, cache=cache)
        return EventStreamResponse(stream, stream_headers(stream.result))
    response, result = await run.answer(CHAT, body, ctx, cache=cache)
    return JSONResponse(response.model_dump(mode="json"), headers=call_headers(result))


@router.post(
    "/v1/completions",
    response_model=TextCompletion,
    responses=EVENT_STREAM_ANSWER,
    openapi_extra=json_body(CompletionRequest),
)
async def completions(request: Request, ctx: CallContextDep) -> Response:
    body = await parse_body(request, CompletionRequest)
    cache = cache_control(request)
    if body.stream:
        stream = await run.stream(COMPLETIONS, body, ctx, cache=cache)
        return EventStreamResponse(stream, stream_headers(stream.result))
    response, result = await run.answer(COMPLETIONS, body, ctx, cache=cache)
    return JSONResponse(response.model_dump(mode="json"), headers=call_headers(result))
