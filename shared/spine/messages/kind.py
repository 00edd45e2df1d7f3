"""`POST /v1/messages` as an endpoint kind of the one pipeline: limits, budgets, the
serving chain (fallbacks to any model kind), one usage row per call.

Each member of the chain is prepared for itself: a Claude model (a provider that
speaks Anthropic's API) is sent the request as it came, with every field and block
and the client's anthropic-beta header; any other model is sent the chat request
`to_chat` builds, checked like any chat request, and its answer or stream is turned
back into Anthropic's shape (`from_chat`). Either way the client sees one API.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from spine.errors import InvalidRequestError
from spine.messages.from_chat import EventsFromChunks, to_message
from spine.messages.to_chat import to_chat_request
from spine.pipeline.kinds import CHAT, EndpointKind
from spine.pipeline.stream import StreamMeter
from spine.providers import get_provider
from spine.providers.base import Target
from spine.registry.resolve import ResolvedModel
from spine.registry.schema import Capability
from spine.schemas.anthropic import AnthropicMessage, MessagesRequest, usage_from_anthropic

Event = dict[str, Any]


def _prepare(request: MessagesRequest, model: ResolvedModel, streaming: bool) -> MessagesRequest:
    entry = model.entry
    if not get_provider(entry.provider).speaks_anthropic:
        chat, dropped = to_chat_request(request)
        effective = CHAT.prepare(chat, model, streaming)
        return request.translated(effective, (*dropped, *effective.dropped_params))
    if not entry.supports(Capability.CHAT):
        raise InvalidRequestError(
            f"Model '{model.requested}' does not support messages.", param="model"
        )
    if streaming and not entry.supports(Capability.STREAMING):
        raise InvalidRequestError(
            f"Model '{model.requested}' does not support streaming; send stream=false.",
            param="stream",
            code="unsupported_capability",
        )
    ceiling = entry.max_output_tokens
    if ceiling is not None and request.max_tokens > ceiling:
        raise InvalidRequestError(
            f"max_tokens: {request.max_tokens} > {ceiling}, the maximum allowed number of "
            f"output tokens for model '{model.requested}'.",
            param="max_tokens",
        )
    changes: dict[str, Any] = {"model": entry.id}
    if model.system_prompt and request.system is None:
        changes["system"] = model.system_prompt  # the profile's, as chat layers it
    return request.native(changes)


async def _call(target: Target, request: MessagesRequest) -> AnthropicMessage:
    provider = get_provider(target.provider)
    if request.chat is None:
        body = await provider.messages(target, _upstream_body(target, request), request.betas)
        return AnthropicMessage.model_validate(body)
    return to_message(await provider.chat(target, request.chat), target.entry.id)


async def _stream(target: Target, request: MessagesRequest) -> AsyncGenerator[Event, None]:
    provider = get_provider(target.provider)
    if request.chat is None:
        events = provider.messages_stream(target, _upstream_body(target, request), request.betas)
        async with aclosing(events) as native:
            async for event in native:
                yield event
        return
    translator = EventsFromChunks(target.entry.id)
    async with aclosing(provider.chat_stream(target, request.chat)) as chunks:
        async for chunk in chunks:
            for event in translator.feed(chunk):
                yield event
    for event in translator.finish():
        yield event


def _upstream_body(target: Target, request: MessagesRequest) -> dict[str, Any]:
    return {**request.wire_body(), "model": target.model}


def _prompt_bytes(request: MessagesRequest) -> int:
    return len(request.model_dump_json(include={"system", "messages"}).encode())


class MessagesMeter(StreamMeter):
    """Reads Anthropic's events: input counts on `message_start`, the final totals on
    `message_delta` (its fields, where present, overriding the start's); the generated
    text of every delta. Each event goes to the client, with Spine's model id."""

    def __init__(self, model: str) -> None:
        super().__init__(model, include_usage=True)
        self._counts: dict[str, Any] = {}

    def shape(self, chunk: Event) -> Event | None:
        kind = chunk.get("type")
        if kind == "message_start":
            message = chunk.get("message") or {}
            self._note(message.get("usage"))
            return {**chunk, "message": {**message, "model": self.model}}
        if kind == "message_delta":
            self._note(chunk.get("usage"))
            # The final counts: a stream cut before them is estimated instead.
            self.usage = usage_from_anthropic(self._counts)
        elif kind == "content_block_delta":
            delta = chunk.get("delta") or {}
            text = delta.get("text") or delta.get("thinking") or delta.get("partial_json") or ""
            self.streamed_bytes += len(str(text).encode())
        return chunk

    def _note(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._counts.update({k: v for k, v in usage.items() if v is not None})


MESSAGES: EndpointKind[MessagesRequest, AnthropicMessage] = EndpointKind(
    name="messages",
    answer_type=AnthropicMessage,
    prepare=_prepare,
    call=_call,
    open_stream=_stream,
    prompt_bytes=_prompt_bytes,
    usage=lambda answer: answer.spine_usage(),
    cacheable=False,
    meter=lambda model, request: MessagesMeter(model),
)
