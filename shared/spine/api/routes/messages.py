"""Anthropic's Messages API (the chat function): POST /v1/messages and
POST /v1/messages/count_tokens. Errors on these routes are Anthropic's shape
(`spine.api.anthropic_errors`); auth takes `x-api-key` as Anthropic's clients send it,
or a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from spine.api.answer_headers import call_headers, stream_headers
from spine.api.anthropic_errors import anthropic_error_event
from spine.api.body import parse_body
from spine.api.deps import CallContextDep, PrincipalDep, RegistryDep, StateDep
from spine.api.openapi import EVENT_STREAM_ANSWER, json_body
from spine.api.sse import EventStreamResponse, SseWire, named_event
from spine.messages.count import count_input_tokens
from spine.messages.kind import MESSAGES
from spine.pipeline import run
from spine.schemas.anthropic import (
    AnthropicMessage,
    CountTokensRequest,
    MessagesRequest,
    TokenCount,
)

router = APIRouter()

# Anthropic's stream: `event: <type>` lines, no [DONE], failures as an `error` event.
ANTHROPIC_EVENTS = SseWire(event=named_event, error=anthropic_error_event)


@router.post(
    "/v1/messages",
    response_model=AnthropicMessage,
    responses=EVENT_STREAM_ANSWER,
    openapi_extra=json_body(MessagesRequest),
)
async def messages(request: Request, ctx: CallContextDep) -> Response:
    body = await parse_body(request, MessagesRequest)
    body = body.with_betas(request.headers.get("anthropic-beta"))
    if body.stream:
        stream = await run.stream(MESSAGES, body, ctx)
        return EventStreamResponse(stream, stream_headers(stream.result), ANTHROPIC_EVENTS)
    answer, result = await run.answer(MESSAGES, body, ctx)
    return JSONResponse(answer.model_dump(mode="json"), headers=call_headers(result))


@router.post(
    "/v1/messages/count_tokens",
    response_model=TokenCount,
    openapi_extra=json_body(CountTokensRequest),
)
async def count_tokens(
    request: Request, _: PrincipalDep, registry: RegistryDep, state: StateDep
) -> JSONResponse:
    # Free, as Anthropic's own is: no usage row, no rate-limit reservation.
    body = await parse_body(request, CountTokensRequest)
    counted = await count_input_tokens(body, registry, state.settings)
    return JSONResponse(
        TokenCount(input_tokens=counted.tokens).model_dump(),
        headers={"x-spine-token-count": "exact" if counted.exact else "estimate"},
    )
