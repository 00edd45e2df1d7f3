"""A chat answer as a Response object (OpenAI's Responses API): its output items, status
and usage, with the request fields a Response repeats.

The same item builders serve a whole answer and a stream's end
(`spine.pipeline.responses_events`), so both give the client the same items.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from spine.schemas.openai import AssistantMessage, ChatCompletion, FinishReason, Usage
from spine.schemas.response_object import (
    IncompleteDetails,
    Item,
    ResponseObject,
    ResponseStatus,
    ResponseUsage,
)

RESPONSE_ID_PREFIX = "resp_"


def new_item_id(prefix: str) -> str:
    """An item id in OpenAI's style: `msg_`, `fc_`, `rs_` and 32 hex digits."""
    return f"{prefix}{uuid.uuid4().hex}"


@dataclass(frozen=True)
class ResponseDraft:
    """The response a request will answer with, before the model speaks: its id, when
    it was asked, and the request fields the Response object repeats (`echo`)."""

    id: str = field(default_factory=lambda: new_item_id(RESPONSE_ID_PREFIX))
    created_at: int = field(default_factory=lambda: int(time.time()))
    echo: dict[str, Any] = field(default_factory=dict)

    def response(
        self,
        model: str,
        status: ResponseStatus,
        output: list[Item],
        *,
        usage: Usage | None = None,
        incomplete: IncompleteDetails | None = None,
    ) -> ResponseObject:
        return ResponseObject(
            id=self.id,
            created_at=self.created_at,
            status=status,
            model=model,
            output=output,
            usage=None if usage is None else ResponseUsage.of(usage),
            incomplete_details=incomplete,
            **self.echo,
        )

    def answer(self, completion: ChatCompletion) -> ResponseObject:
        """A whole chat answer as this response (one choice: Spine asks for one)."""
        choice = completion.choices[0] if completion.choices else None
        message = choice.message if choice is not None else AssistantMessage(content="")
        status, incomplete = status_of(choice.finish_reason if choice is not None else None)
        return self.response(
            completion.model,
            status,
            output_items(message, status),
            usage=completion.usage,
            incomplete=incomplete,
        )


def status_of(
    finish_reason: FinishReason | str | None,
) -> tuple[ResponseStatus, IncompleteDetails | None]:
    """A chat finish reason as the response's status: cut by the output limit or a
    content filter is `incomplete`, with the reason."""
    if finish_reason == "length":
        return "incomplete", IncompleteDetails(reason="max_output_tokens")
    if finish_reason == "content_filter":
        return "incomplete", IncompleteDetails(reason="content_filter")
    return "completed", None


def output_items(message: AssistantMessage, status: ResponseStatus) -> list[Item]:
    """The output items of a chat answer, in the order the model produced them: its
    reasoning, its message (left out when it only called tools), its tool calls."""
    items: list[Item] = []
    if message.reasoning_content:
        items.append(reasoning_item(new_item_id("rs_"), message.reasoning_content))
    if message.content or message.refusal or not message.tool_calls:
        parts = []
        if message.content or not message.refusal:
            parts.append(text_part(message.content or ""))
        if message.refusal:
            parts.append(refusal_part(message.refusal))
        items.append(message_item(new_item_id("msg_"), parts, item_status(status)))
    for call in message.tool_calls or []:
        items.append(
            function_call_item(
                new_item_id("fc_"), call.id, call.function.name, call.function.arguments
            )
        )
    return items


def item_status(status: ResponseStatus) -> str:
    return "incomplete" if status == "incomplete" else "completed"


def text_part(text: str) -> Item:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(refusal: str) -> Item:
    return {"type": "refusal", "refusal": refusal}


def reasoning_text_part(text: str) -> Item:
    return {"type": "reasoning_text", "text": text}


def message_item(item_id: str, parts: list[Item], status: str) -> Item:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": parts,
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> Item:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def reasoning_item(item_id: str, text: str, status: str = "completed") -> Item:
    parts = [reasoning_text_part(text)] if text else []
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [], "content": parts}
