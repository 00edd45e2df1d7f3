"""OpenAI chat shapes <-> Anthropic Messages shapes.

Decisions:
- `system`/`developer` messages go to the top-level `system`; `tool` results become
  `tool_result` blocks of a user turn; consecutive turns of one role are merged, since
  the API wants user and assistant to alternate.
- `max_tokens` is required upstream: the request's limit, else the model's
  `max_output_tokens`, else 4096.
- Usage: Anthropic's `input_tokens` EXCLUDES cache reads and writes, so prompt tokens
  are `input + cache_read + cache_creation` and cached tokens are `cache_read`.
"""

from __future__ import annotations

import json
from typing import Any

from anthropic.types import Message, RawMessageStreamEvent

from spine.errors import InvalidRequestError
from spine.providers.base import Target
from spine.providers.convert import ChunkWriter, parse_arguments, parse_data_url
from spine.schemas.openai import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    FinishReason,
    FunctionCall,
    ImagePart,
    ResponseToolCall,
    TextPart,
    Usage,
)

DEFAULT_MAX_TOKENS = 4096

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}


# --- request ---------------------------------------------------------------------------


def _image_block(part: ImagePart) -> dict[str, Any]:
    inline = parse_data_url(part.image_url.url)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": part.image_url.url}}
    mime, _ = inline
    data = part.image_url.url.split(",", 1)[1]  # already base64, as the API wants it
    return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text()}
        ]
    if isinstance(message.content, list):
        # Audio and file parts are refused before an Anthropic call (params).
        blocks = [
            _image_block(p) if isinstance(p, ImagePart) else _text_block(p)
            for p in message.content
            if isinstance(p, ImagePart | TextPart)
        ]
    else:
        blocks = [{"type": "text", "text": message.content}] if message.content else []
    for call in message.tool_calls or []:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": parse_arguments(call.function.arguments),
            }
        )
    return blocks


def _text_block(part: TextPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache_control is not None:  # Anthropic's prompt caching breakpoint
        block["cache_control"] = part.cache_control
    return block


def to_messages(
    messages: list[ChatMessage],
) -> tuple[list[dict[str, Any]], str | list[dict[str, Any]] | None]:
    """(conversation, system prompt): the system prompt as text, or as text blocks
    when one of its parts marks a cache breakpoint."""
    system: list[str] = []
    system_blocks: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            system.append(message.text())
            if isinstance(message.content, list):
                system_blocks += [
                    _text_block(p) for p in message.content if isinstance(p, TextPart)
                ]
            elif message.content:
                system_blocks.append({"type": "text", "text": message.content})
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if any("cache_control" in block for block in system_blocks):
        return turns, system_blocks
    return turns, ("\n\n".join(system) if system else None)


def _tool_choice(request: ChatCompletionRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None and request.parallel_tool_calls is None:
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise InvalidRequestError("tool_choice must name a function", param="tool_choice")
        result: dict[str, Any] = {"type": "tool", "name": name}
    else:
        kinds = {None: "auto", "auto": "auto", "required": "any", "none": "none"}
        result = {"type": kinds[choice]}
    if request.parallel_tool_calls is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


def to_params(target: Target, request: ChatCompletionRequest) -> dict[str, Any]:
    turns, system = to_messages(request.messages)
    params: dict[str, Any] = {
        "model": target.model,
        "messages": turns,
        "max_tokens": request.output_limit()
        or target.entry.max_output_tokens
        or DEFAULT_MAX_TOKENS,
    }
    if system:
        params["system"] = system
    if request.stop is not None:
        params["stop_sequences"] = request.stop_list()
    if request.user:
        params["metadata"] = {"user_id": request.user}
    if request.tools:
        params["tools"] = [
            {
                "name": tool.function.name,
                "description": tool.function.description or "",
                "input_schema": tool.function.parameters or {"type": "object", "properties": {}},
            }
            for tool in request.tools
            if tool.function is not None  # custom tools never reach Anthropic (params)
        ]
    if (tool_choice := _tool_choice(request)) is not None and request.tools:
        params["tool_choice"] = tool_choice
    output: dict[str, Any] = {}
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise InvalidRequestError(
                "Anthropic models need response_format type 'json_schema' with a schema",
                param="response_format",
            )
        output["format"] = {"type": "json_schema", "schema": fmt.json_schema.schema_}
    if request.reasoning_effort:
        output["effort"] = _EFFORT[request.reasoning_effort]
    if output:
        params["output_config"] = output
    return params


# --- answer ----------------------------------------------------------------------------


def to_usage(
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None,
    cache_creation: int | None,
    thinking: int | None = None,
) -> Usage:
    prompt = (input_tokens or 0) + (cache_read or 0) + (cache_creation or 0)
    return Usage.of(
        prompt,
        output_tokens or 0,
        cached=cache_read or 0,
        reasoning=thinking or 0,
        cache_write=cache_creation or 0,
    )


def _message_usage(message: Message) -> Usage:
    u = message.usage
    details = u.output_tokens_details
    return to_usage(
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
        details.thinking_tokens if details else None,
    )


def stop_reason(raw: str | None) -> FinishReason:
    return _STOP_REASONS.get(raw or "end_turn", "stop")


def to_chat_completion(message: Message) -> ChatCompletion:
    texts = [b.text for b in message.content if b.type == "text"]
    calls = [
        ResponseToolCall(id=b.id, function=FunctionCall(name=b.name, arguments=json.dumps(b.input)))
        for b in message.content
        if b.type == "tool_use"
    ]
    return ChatCompletion(
        id=f"chatcmpl-{message.id}",
        model=message.model,
        choices=[
            Choice(
                message=AssistantMessage(
                    content="".join(texts) if texts or not calls else None,
                    tool_calls=calls or None,
                ),
                finish_reason=stop_reason(message.stop_reason),
            )
        ],
        usage=_message_usage(message),
    )


class StreamTranslator:
    """Anthropic stream events -> OpenAI chunks. Usage arrives in two halves: input
    counts on `message_start`, the output count on `message_delta`."""

    def __init__(self) -> None:
        self.writer = ChunkWriter(model="")
        self.input: tuple[int | None, int | None, int | None] = (None, None, None)
        self.tool_index: dict[int, int] = {}  # content block index -> tool call index

    def feed(self, event: RawMessageStreamEvent) -> list[dict[str, Any]]:
        w = self.writer
        if event.type == "message_start":
            m = event.message
            w.id, w.model = f"chatcmpl-{m.id}", m.model
            self.input = (
                m.usage.input_tokens,
                m.usage.cache_read_input_tokens,
                m.usage.cache_creation_input_tokens,
            )
            return [w.role()]
        if event.type == "content_block_start" and event.content_block.type == "tool_use":
            block = event.content_block
            self.tool_index[event.index] = len(self.tool_index)
            return [
                w.tool_call(
                    self.tool_index[event.index], call_id=block.id, name=block.name, arguments=""
                )
            ]
        if event.type == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return [w.content(delta.text)]
            if delta.type == "input_json_delta" and event.index in self.tool_index:
                index = self.tool_index[event.index]
                return [w.tool_call(index, call_id=None, name=None, arguments=delta.partial_json)]
            return []  # thinking, signatures, citations: not part of the answer
        if event.type == "message_delta":
            u = event.usage
            input_tokens, cache_read, cache_creation = self.input
            details = u.output_tokens_details
            usage = to_usage(
                u.input_tokens if u.input_tokens is not None else input_tokens,
                u.output_tokens,
                u.cache_read_input_tokens if u.cache_read_input_tokens is not None else cache_read,
                (
                    u.cache_creation_input_tokens
                    if u.cache_creation_input_tokens is not None
                    else cache_creation
                ),
                details.thinking_tokens if details else None,
            )
            return [w.finish(stop_reason(event.delta.stop_reason)), w.usage(usage)]
        return []
