"""A Messages API request as the chat request a non-Claude model is sent.

What translates: the system prompt (with its cache breakpoints), text and image
blocks, tool_use blocks (assistant tool calls) and tool_result blocks (tool
messages, placed right after the call as chat wants them), client tools and
tool_choice, stop sequences, temperature/top_p/top_k, `metadata.user_id`, extended
thinking (as a reasoning effort) and `output_config` (structured output, effort).
Thinking blocks sent back in the history are Claude's own and are left out. Anything
else (documents, server tools, images inside tool results) is refused by name: a
400 is better than an answer to a question the model never saw.
"""

from __future__ import annotations

import json
from typing import Any

from spine.errors import InvalidRequestError
from spine.schemas.anthropic import (
    ImageBlock,
    InputMessage,
    MessagesRequest,
    OtherBlock,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolDefinition,
    ToolResultBlock,
    ToolUseBlock,
)
from spine.schemas.openai import (
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageUrl,
    JsonSchemaFormat,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)

# Messages fields this module reads; any other field the client sent is Anthropic's
# alone and is dropped (and named) for other models.
_TRANSLATED = frozenset(
    {
        "model", "max_tokens", "messages", "system", "stop_sequences", "stream",
        "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "metadata",
        "output_config",
    }
)  # fmt: skip

# Extended thinking's budget, as the reasoning effort of models that take one.
_EFFORT_BY_BUDGET = ((4096, "low"), (16384, "medium"))


def to_chat_request(request: MessagesRequest) -> tuple[ChatCompletionRequest, tuple[str, ...]]:
    """The chat request for a non-Claude model, and the Messages fields it leaves out
    (Anthropic's alone); raises InvalidRequestError naming a part it cannot carry."""
    fields: dict[str, Any] = {
        "model": request.model,
        "messages": _messages(request),
        "max_tokens": request.max_tokens,
    }
    if request.stream:
        fields["stream"] = True
        fields["stream_options"] = {"include_usage": True}
    if request.stop_sequences:
        fields["stop"] = request.stop_sequences
    for name in ("temperature", "top_p", "top_k"):
        if (value := getattr(request, name)) is not None:
            fields[name] = value
    if request.metadata and isinstance(user := request.metadata.get("user_id"), str):
        fields["user"] = user
    if request.tools:
        fields["tools"] = [_tool(tool, index) for index, tool in enumerate(request.tools)]
    fields.update(_tool_choice(request.tool_choice))
    if (effort := _effort(request)) is not None:
        fields["reasoning_effort"] = effort
    if (response_format := _response_format(request)) is not None:
        fields["response_format"] = response_format
    chat = ChatCompletionRequest.model_validate(fields)
    return chat, tuple(sorted(set(request.model_extra or {}) - _TRANSLATED))


# --- messages --------------------------------------------------------------------------


def _messages(request: MessagesRequest) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    if request.system is not None:
        out.append(_system(request.system))
    for index, message in enumerate(request.messages):
        out += _turn(message, f"messages[{index}]")
    return out


def _system(system: str | list[TextBlock]) -> ChatMessage:
    if isinstance(system, str):
        return ChatMessage(role="system", content=system)
    parts: list[ContentPart] = [
        TextPart(type="text", text=block.text, cache_control=block.cache_control)
        for block in system
    ]
    return ChatMessage(role="system", content=parts)


def _turn(message: InputMessage, where: str) -> list[ChatMessage]:
    """One Messages turn as chat messages: tool results first (chat wants them right
    after the assistant's calls), then the rest of the turn."""
    if isinstance(message.content, str):
        return [ChatMessage(role=message.role, content=message.content)]
    results: list[ChatMessage] = []
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for index, block in enumerate(message.content):
        at = f"{where}.content[{index}]"
        if isinstance(block, TextBlock):
            parts.append(TextPart(type="text", text=block.text, cache_control=block.cache_control))
        elif isinstance(block, ImageBlock):
            parts.append(_image(block, at))
        elif isinstance(block, ToolUseBlock):
            calls.append(
                ToolCall(
                    id=block.id,
                    function=FunctionCall(name=block.name, arguments=json.dumps(block.input)),
                )
            )
        elif isinstance(block, ToolResultBlock):
            results.append(_tool_result(block, at))
        elif isinstance(block, ThinkingBlock | RedactedThinkingBlock):
            continue  # Claude's own reasoning, signed for Claude: no use to another model
        else:
            assert isinstance(block, OtherBlock)
            raise _untranslatable(f"content block type '{block.type}'", at)
    if message.role == "assistant":
        text = "".join(p.text for p in parts if isinstance(p, TextPart))
        if not text and not calls:
            return results
        return [
            *results,
            ChatMessage(role="assistant", content=text or None, tool_calls=calls or None),
        ]
    if calls:
        raise InvalidRequestError(
            f"Invalid value for '{where}': tool_use blocks belong to assistant turns.",
            param=where,
        )
    return [*results, ChatMessage(role="user", content=parts)] if parts else results


def _image(block: ImageBlock, where: str) -> ImagePart:
    source = block.source
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        url = f"data:{source.get('media_type', 'image/png')};base64,{source['data']}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _untranslatable(f"image source type '{source.get('type')}'", f"{where}.source")
    return ImagePart(type="image_url", image_url=ImageUrl(url=url))


def _tool_result(block: ToolResultBlock, where: str) -> ChatMessage:
    content = block.content
    if isinstance(content, list):
        if any(isinstance(part, ImageBlock) for part in content):
            raise _untranslatable("an image inside a tool_result", f"{where}.content")
        text = "".join(part.text for part in content if isinstance(part, TextBlock))
    else:
        text = content or ""
    if block.is_error:
        text = f"Error: {text}"  # chat has no error flag on a tool result
    return ChatMessage(role="tool", tool_call_id=block.tool_use_id, content=text)


# --- tools and settings ------------------------------------------------------------------


def _tool(tool: ToolDefinition, index: int) -> Tool:
    if not tool.is_client_tool:
        raise _untranslatable(f"server tool type '{tool.type}'", f"tools[{index}].type")
    return Tool(
        type="function",
        function=FunctionDefinition(
            name=tool.name,
            description=tool.description,
            parameters=tool.input_schema or {"type": "object", "properties": {}},
        ),
    )


def _tool_choice(choice: dict[str, Any] | None) -> dict[str, Any]:
    if choice is None:
        return {}
    kind = choice.get("type")
    fields: dict[str, Any] = {}
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise InvalidRequestError(
                "Invalid value for 'tool_choice.name': a tool's name is required.",
                param="tool_choice.name",
            )
        fields["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind in ("auto", "any", "none"):
        fields["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise InvalidRequestError(
            f"Invalid value for 'tool_choice.type': '{kind}' is not one of "
            "'auto', 'any', 'tool' or 'none'.",
            param="tool_choice.type",
        )
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        fields["parallel_tool_calls"] = False
    return fields


def _effort(request: MessagesRequest) -> str | None:
    config = (request.model_extra or {}).get("output_config")
    if isinstance(config, dict) and isinstance(config.get("effort"), str):
        return {"max": "high"}.get(config["effort"], config["effort"])
    thinking = request.thinking or {}
    if thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return "medium"
    return next((effort for limit, effort in _EFFORT_BY_BUDGET if budget < limit), "high")


def _response_format(request: MessagesRequest) -> ResponseFormat | None:
    config = (request.model_extra or {}).get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise InvalidRequestError(
            "Invalid value for 'output_config.format': only type 'json_schema' with a "
            "'schema' is supported.",
            param="output_config.format",
        )
    return ResponseFormat(
        type="json_schema",
        json_schema=JsonSchemaFormat.model_validate(
            {"name": "output", "schema": fmt["schema"], "strict": True}
        ),
    )


def _untranslatable(what: str, where: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid value for '{where}': {what} is supported only by Claude models "
        "(Spine translates the Messages API for other models).",
        param=where,
        code="unsupported_content",
    )
