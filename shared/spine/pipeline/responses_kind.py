"""`POST /v1/responses` as an endpoint kind: a chat call underneath (every provider,
with chat's checks, defaults, limits, fallbacks and usage), whose stream is written as
the Responses API's events. Its usage rows say `responses`.

The response cache stays out: a Responses call is stateful (stored, chained by
`previous_response_id`), and its stream is not chat chunks the cache could keep.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from spine.pipeline.kinds import CHAT, Chunk, EndpointKind
from spine.pipeline.responses_chat import ResponsesChatRequest
from spine.pipeline.responses_events import ResponseEvents, ResponsesMeter
from spine.providers import get_provider
from spine.providers.base import Target
from spine.registry.resolve import ResolvedModel
from spine.schemas.openai import ChatCompletion


def _prepare(
    request: ResponsesChatRequest, model: ResolvedModel, streaming: bool
) -> ResponsesChatRequest:
    effective = CHAT.prepare(request, model, streaming)
    assert isinstance(effective, ResponsesChatRequest)  # chat's checks keep the type
    # The checks rebuild the request; the draft response goes with the copy.
    return effective.carrying(request.draft)


async def _call(target: Target, request: ResponsesChatRequest) -> ChatCompletion:
    return await CHAT.call(target, request)


async def _open_stream(
    target: Target, request: ResponsesChatRequest
) -> AsyncGenerator[Chunk, None]:
    """The provider's chat stream as Responses events. Nothing is produced before the
    provider's first chunk, so a failure up to there is retried or falls back."""
    events = ResponseEvents(request.draft, request.model)
    upstream = get_provider(target.provider).chat_stream(target, request)
    async with aclosing(upstream) as chunks:
        async for chunk in chunks:
            for event in events.feed(chunk):
                yield event
    for event in events.closing():
        yield event


RESPONSES: EndpointKind[ResponsesChatRequest, ChatCompletion] = EndpointKind(
    name="responses",
    answer_type=ChatCompletion,
    prepare=_prepare,
    call=_call,
    open_stream=_open_stream,
    prompt_bytes=CHAT.prompt_bytes,
    usage=lambda answer: answer.usage,
    cacheable=False,
    meter=lambda model, request: ResponsesMeter(model),
)
