"""OpenAI chat shapes <-> Gemini `generateContent` shapes (google-genai types).

Kept apart from the adapter so the conversions read as plain functions. Decisions:

- Roles: `assistant` -> `model`; `system`/`developer` -> `system_instruction` (hoisted, in
  order); `tool` results -> `user` turns of `function_response` parts. Consecutive turns
  of one role are merged, so parallel tool results answer their calls in one turn, as
  Gemini requires.
- Usage: Gemini's `prompt_token_count` already INCLUDES `cached_content_token_count`,
  exactly like OpenAI's `prompt_tokens` includes `cached_tokens`. So prompt tokens are
  `prompt_token_count` (+ `tool_use_prompt_token_count`, billed as input) and cached
  tokens are the cached count as a subset, never added again (LiteLLM double-charged
  cache hits, BerriAI/litellm#14849, and dropped them elsewhere, #16341). Completion
  tokens are `candidates_token_count + thoughts_token_count` (Gemini counts thinking
  apart; OpenAI counts reasoning inside completion tokens), reasoning = thoughts. The
  result adds up to Gemini's own `total_token_count`.
- A prompt Gemini blocks (`prompt_feedback.block_reason`, no candidates) is a 400 with
  code `content_filter`, as Azure OpenAI answers a filtered prompt: the client's input
  is what must change, a retry or fallback will not help, and an empty 200 would look
  like a successful answer. A blocked *answer* is `finish_reason: content_filter`.
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any

from google.genai import types

from spine.errors import InvalidRequestError
from spine.providers.convert import new_id, parse_arguments, parse_data_url, tool_names_by_id
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

# Ids Spine makes up for function calls Gemini returned without one; never sent back.
GENERATED_CALL_PREFIX = "call_gm"

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


# --- request ---------------------------------------------------------------------------


def _image_part(part: ImagePart) -> types.Part:
    url = part.image_url.url
    inline = parse_data_url(url)
    if inline is not None:
        mime, data = inline
        return types.Part(inline_data=types.Blob(mime_type=mime, data=data))
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
    return types.Part(file_data=types.FileData(file_uri=url, mime_type=mime))


def _user_parts(message: ChatMessage) -> list[types.Part]:
    if isinstance(message.content, str):
        return [types.Part(text=message.content)]
    # Audio and file parts are refused before a Gemini call (spine.pipeline.params).
    return [
        _image_part(p) if isinstance(p, ImagePart) else types.Part(text=p.text)
        for p in message.content or []
        if isinstance(p, ImagePart | TextPart)
    ]


def _assistant_parts(message: ChatMessage) -> list[types.Part]:
    parts = [types.Part(text=message.text())] if message.text() else []
    for call in message.tool_calls or []:
        known_id = None if call.id.startswith(GENERATED_CALL_PREFIX) else call.id
        parts.append(
            types.Part(
                function_call=types.FunctionCall(
                    id=known_id,
                    name=call.function.name,
                    args=parse_arguments(call.function.arguments),
                )
            )
        )
    return parts


def _tool_result_part(message: ChatMessage, names: dict[str, str]) -> types.Part:
    call_id = message.tool_call_id or ""
    name = names.get(call_id)
    if name is None:
        raise InvalidRequestError(
            f"The tool message answers tool_call_id '{call_id}', which no earlier "
            "assistant message called",
            param="messages",
        )
    text = message.text()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = None
    # Gemini wants an object; its docs name the key for a plain result "output".
    response = parsed if isinstance(parsed, dict) else {"output": text}
    known_id = None if call_id.startswith(GENERATED_CALL_PREFIX) else call_id
    return types.Part(
        function_response=types.FunctionResponse(id=known_id, name=name, response=response)
    )


def to_contents(messages: list[ChatMessage]) -> tuple[list[types.Content], types.Content | None]:
    """(conversation, system instruction)."""
    names = tool_names_by_id(messages)
    system: list[types.Part] = []
    contents: list[types.Content] = []
    for message in messages:
        if message.role in ("system", "developer"):
            system.append(types.Part(text=message.text()))
            continue
        if message.role == "tool":
            role, parts = "user", [_tool_result_part(message, names)]
        elif message.role == "assistant":
            role, parts = "model", _assistant_parts(message)
        else:
            role, parts = "user", _user_parts(message)
        if contents and contents[-1].role == role:
            contents[-1].parts = [*(contents[-1].parts or []), *parts]
        else:
            contents.append(types.Content(role=role, parts=parts))
    return contents, (types.Content(parts=system) if system else None)


def _tool_config(choice: str | dict[str, Any] | None) -> types.ToolConfig | None:
    if choice is None:
        return None
    mode = types.FunctionCallingConfigMode
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise InvalidRequestError(
                "tool_choice must name a function: {'type': 'function', 'function': {'name': ...}}",
                param="tool_choice",
            )
        config = types.FunctionCallingConfig(mode=mode.ANY, allowed_function_names=[name])
    else:
        modes = {"none": mode.NONE, "auto": mode.AUTO, "required": mode.ANY}
        config = types.FunctionCallingConfig(mode=modes[choice])
    return types.ToolConfig(function_calling_config=config)


def to_config(
    request: ChatCompletionRequest, system: types.Content | None
) -> types.GenerateContentConfig:
    config = types.GenerateContentConfig(
        system_instruction=system,
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.output_limit(),
        stop_sequences=request.stop_list(),
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        # Spine executes nothing on the model's behalf and does retries itself: no
        # SDK-side function calling loop, no transparent continuation requests.
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        automatic_continuation=False,
    )
    if request.tools:
        config.tools = [
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(
                        name=tool.function.name,
                        description=tool.function.description,
                        # Full JSON Schema, not the OpenAPI subset of `parameters`.
                        parameters_json_schema=tool.function.parameters,
                    )
                    for tool in request.tools
                    if tool.function is not None  # custom tools never reach Gemini
                ]
            )
        ]
        config.tool_config = _tool_config(request.tool_choice)
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        config.response_mime_type = "application/json"
        if fmt.json_schema is not None and fmt.json_schema.schema_ is not None:
            config.response_json_schema = fmt.json_schema.schema_
    return config


# --- answer ----------------------------------------------------------------------------


def to_usage(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    if meta is None:
        return Usage()
    prompt = (meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0)
    thoughts = meta.thoughts_token_count or 0
    return Usage.of(
        prompt,
        (meta.candidates_token_count or 0) + thoughts,
        cached=meta.cached_content_token_count or 0,
        reasoning=thoughts,
    )


def finish_reason(raw: types.FinishReason | str | None, has_tool_calls: bool) -> FinishReason:
    name = raw.value if isinstance(raw, types.FinishReason) else (raw or "STOP")
    if name in _FILTERED:
        return "content_filter"
    if name == "MAX_TOKENS":
        return "length"
    return "tool_calls" if has_tool_calls else "stop"


def prompt_block(raw: types.GenerateContentResponse) -> InvalidRequestError | None:
    feedback = raw.prompt_feedback
    if feedback is None or feedback.block_reason is None:
        return None
    reason = feedback.block_reason
    name = reason.value if isinstance(reason, types.BlockedReason) else str(reason)
    why = f": {feedback.block_reason_message}" if feedback.block_reason_message else ""
    return InvalidRequestError(
        f"The upstream provider 'gemini' blocked the prompt ({name}){why}",
        param="messages",
        code="content_filter",
    )


def answer_parts(
    candidate: types.Candidate | None,
) -> tuple[str | None, list[ResponseToolCall]]:
    """(visible text, tool calls) of a candidate; thought summaries are not the answer."""
    parts = (candidate.content.parts if candidate and candidate.content else None) or []
    texts = [p.text for p in parts if p.text and not p.thought]
    calls = [
        ResponseToolCall(
            id=p.function_call.id or new_id(GENERATED_CALL_PREFIX),
            function=FunctionCall(
                name=p.function_call.name or "",
                arguments=json.dumps(p.function_call.args or {}),
            ),
        )
        for p in parts
        if p.function_call is not None
    ]
    return ("".join(texts) if texts else None), calls


def to_chat_completion(raw: types.GenerateContentResponse, model: str) -> ChatCompletion:
    candidate = raw.candidates[0] if raw.candidates else None
    text, calls = answer_parts(candidate)
    return ChatCompletion(
        id=f"chatcmpl-{raw.response_id}" if raw.response_id else new_id("chatcmpl-"),
        model=raw.model_version or model,
        choices=[
            Choice(
                message=AssistantMessage(
                    content=text if text is not None or calls else "", tool_calls=calls or None
                ),
                finish_reason=finish_reason(
                    candidate.finish_reason if candidate else None, bool(calls)
                ),
            )
        ],
        usage=to_usage(raw.usage_metadata),
    )
