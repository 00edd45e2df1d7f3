"""A Responses API request as the chat request every provider answers.

The conversation (earlier turns from `previous_response_id`, then this request's input
items) becomes chat messages: `instructions` a system message first (OpenAI does not
carry instructions over from earlier turns, nor does this), messages as messages,
`function_call` items as the assistant's `tool_calls`, `function_call_output` items as
`tool` messages; `reasoning` items are dropped (chat cannot send them back). Function
tools, `tool_choice`, `text.format` and the sampling fields map to their chat fields;
fields Spine does not know travel on as chat's unknown fields do.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import PrivateAttr, ValidationError

from spine.errors import InvalidRequestError
from spine.pipeline.responses_answer import ResponseDraft, new_item_id
from spine.schemas.openai import ChatCompletionRequest
from spine.schemas.response_object import Item
from spine.schemas.responses import (
    FormatJsonObject,
    FormatJsonSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ResponsesRequest,
    ToolChoiceFunction,
)

# Request fields accepted without effect: named in x-spine-dropped-params when set.
IGNORED_FIELDS = ("include", "max_tool_calls", "top_logprobs", "stream_options")
# Chat's names of the fields a provider may drop, as the Responses API names them.
_RESPONSES_NAMES = {
    "max_completion_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "response_format": "text.format",
    "verbosity": "text.verbosity",
}


class ResponsesChatRequest(ChatCompletionRequest):
    """The chat request of a Responses call. It carries the response being drafted (its
    id and the fields it repeats), so that a stream's events can be written from the
    chat chunks; a private attribute, never sent upstream."""

    _draft: ResponseDraft | None = PrivateAttr(default=None)

    @property
    def draft(self) -> ResponseDraft:
        assert self._draft is not None, "carrying(draft) first"
        return self._draft

    def carrying(self, draft: ResponseDraft) -> Self:
        self._draft = draft
        return self


def input_items(body: ResponsesRequest) -> list[Item]:
    """The request's input items as OpenAI stores and lists them: each with an id, a
    message's content as parts; reasoning items are left out."""
    items: list[Item] = []
    for item in body.input:
        if isinstance(item, MessageItem):
            items.append(
                {
                    "id": item.id or new_item_id("msg_"),
                    "type": "message",
                    "role": item.role,
                    "status": item.status or "completed",
                    "content": [p.model_dump(mode="json", exclude_none=True) for p in item.content],
                }
            )
        elif isinstance(item, FunctionCallItem):
            items.append(
                {
                    **item.model_dump(mode="json", exclude_none=True),
                    "id": item.id or new_item_id("fc_"),
                    "status": item.status or "completed",
                }
            )
        elif isinstance(item, FunctionCallOutputItem):
            dumped = item.model_dump(mode="json", exclude_none=True)
            items.append(
                {
                    **dumped,
                    "id": item.id or new_item_id("fco_"),
                    "status": item.status or "completed",
                }
            )
    return items


def chat_request(
    body: ResponsesRequest, history: list[Item], items: list[Item], draft: ResponseDraft
) -> tuple[ResponsesChatRequest, tuple[str, ...]]:
    """The chat request for the conversation (`history`, the earlier turns, then this
    request's `items`) and the Responses fields it leaves out."""
    conversation = [*history, *items]
    _check_tool_outputs(conversation, first_new=len(history))
    messages = chat_messages(conversation)
    if not messages:
        raise InvalidRequestError(
            "'input' holds nothing for the model to answer: send a message.", param="input"
        )
    if body.instructions:
        messages.insert(0, {"role": "system", "content": body.instructions})
    fields: dict[str, Any] = {
        "model": body.model,
        "messages": messages,
        "max_completion_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "parallel_tool_calls": body.parallel_tool_calls,
        "user": body.user,
        "tools": _chat_tools(body),
        "tool_choice": _chat_tool_choice(body),
        "response_format": _response_format(body),
        "reasoning_effort": body.reasoning.effort if body.reasoning else None,
        "verbosity": body.text.verbosity if body.text else None,
    }
    # Fields Spine does not know (service_tier, prompt_cache_key, ...): as chat's.
    fields.update((body.model_extra or {}).items())
    try:
        request = ResponsesChatRequest.model_validate(
            {name: value for name, value in fields.items() if value is not None}
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise InvalidRequestError(
            f"The conversation cannot be sent as chat: {first.get('msg', 'invalid')}",
            param="input",
        ) from exc
    return request.carrying(draft), _ignored(body)


def responses_names(dropped: tuple[str, ...]) -> tuple[str, ...]:
    """Chat field names a provider dropped, as the client named them."""
    return tuple(_RESPONSES_NAMES.get(name, name) for name in dropped)


def echo_of(body: ResponsesRequest) -> dict[str, Any]:
    """What the Response object repeats of the request."""
    text: dict[str, Any] = {"format": {"type": "text"}}
    if body.text is not None:
        if body.text.format is not None:
            text["format"] = body.text.format.model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        if body.text.verbosity is not None:
            text["verbosity"] = body.text.verbosity
    echo: dict[str, Any] = {
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": body.reasoning.model_dump(exclude_none=True) if body.reasoning else {},
        "store": body.stored,
        "temperature": body.temperature,
        "text": text,
        "tool_choice": (
            body.tool_choice.model_dump()
            if isinstance(body.tool_choice, ToolChoiceFunction)
            else body.tool_choice or "auto"
        ),
        "tools": [t.model_dump(mode="json", exclude_none=True) for t in body.tools or []],
        "top_p": body.top_p,
        "truncation": body.truncation or "disabled",
        "user": body.user,
        "metadata": body.metadata or {},
    }
    return echo


# --- items as chat messages --------------------------------------------------------------


def chat_messages(items: list[Item]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            messages.append(_message(item))
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            # Calls made together (and the text before them) are one assistant turn.
            if last is not None and last["role"] == "assistant":
                last["tool_calls"] = [*(last.get("tool_calls") or []), call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            content = output if isinstance(output, str) else _chat_content(output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
        # `reasoning` items: chat has no way to send them back.
    return messages


def _message(item: Item) -> dict[str, Any]:
    parts: list[Item] = item["content"]
    if item["role"] != "assistant":
        return {"role": item["role"], "content": _chat_content(parts)}
    text = "".join(p["text"] for p in parts if p["type"] in ("output_text", "input_text"))
    refusal = "".join(p["refusal"] for p in parts if p["type"] == "refusal")
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if refusal:
        message["refusal"] = refusal
    return message


def _chat_content(parts: list[Item]) -> str | list[dict[str, Any]]:
    """Text alone as a string (what every provider takes); anything else as chat parts."""
    if all(p["type"] in ("input_text", "output_text") for p in parts):
        return "".join(p["text"] for p in parts)
    out: list[dict[str, Any]] = []
    for part in parts:
        kind = part["type"]
        if kind in ("input_text", "output_text"):
            out.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("auto", "low", "high"):
                image["detail"] = part["detail"]
            out.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            names = ("file_id", "file_data", "filename")
            out.append({"type": "file", "file": {n: part[n] for n in names if n in part}})
    return out


def _check_tool_outputs(items: list[Item], *, first_new: int) -> None:
    """Every function_call_output answers a function_call made before it (chat
    providers refuse an orphan tool message, with a less useful error)."""
    called: set[str] = set()
    for index, item in enumerate(items):
        if item.get("type") == "function_call":
            called.add(item["call_id"])
        elif item.get("type") == "function_call_output" and item["call_id"] not in called:
            raise InvalidRequestError(
                f"No tool call found for function call output with call_id "
                f"'{str(item['call_id'])[:64]}'.",
                param=f"input[{max(index - first_new, 0)}].call_id",
                code="invalid_value",
            )


# --- tools and formats -------------------------------------------------------------------


def _chat_tools(body: ResponsesRequest) -> list[dict[str, Any]] | None:
    if not body.tools:
        return None
    tools = []
    for tool in body.tools:
        function = tool.model_dump(mode="json", exclude_none=True, exclude={"type"})
        tools.append({"type": "function", "function": function})
    return tools


def _chat_tool_choice(body: ResponsesRequest) -> str | dict[str, Any] | None:
    choice = body.tool_choice
    if isinstance(choice, ToolChoiceFunction):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


def _response_format(body: ResponsesRequest) -> dict[str, Any] | None:
    form = body.text.format if body.text else None
    if isinstance(form, FormatJsonSchema):
        schema = form.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"type"})
        return {"type": "json_schema", "json_schema": schema}
    if isinstance(form, FormatJsonObject):
        return {"type": "json_object"}
    return None  # plain text: chat's default


def _ignored(body: ResponsesRequest) -> tuple[str, ...]:
    names = [name for name in IGNORED_FIELDS if getattr(body, name) is not None]
    if body.truncation == "auto":
        names.append("truncation")
    if body.reasoning is not None and (body.reasoning.summary or body.reasoning.generate_summary):
        names.append("reasoning.summary")
    return tuple(names)
