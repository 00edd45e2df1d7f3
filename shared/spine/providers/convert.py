"""Small conversions shared by the adapters: ids, data URLs, tool arguments, and the
OpenAI `chat.completion.chunk` dicts every `chat_stream` yields."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from spine.errors import InvalidRequestError
from spine.schemas.openai import ChatMessage, FinishReason, Usage

# Request fields every adapter accepts: routing and transport, not generation settings.
# `user` is an end-user tag for abuse tracking; providers without one simply drop it.
COMMON_PARAMS = frozenset(
    {"model", "messages", "prompt", "stream", "stream_options", "n", "user", "session_id"}
)

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*?;base64,(?P<data>.*)$", re.S)


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def parse_data_url(url: str) -> tuple[str, bytes] | None:
    """(mime type, bytes) of a base64 `data:` URL; None for any other URL."""
    if not url.startswith("data:"):
        return None
    match = _DATA_URL.match(url)
    if match is None:
        raise InvalidRequestError(
            "Image data URLs must look like 'data:image/png;base64,...'", param="messages"
        )
    try:
        return match["mime"], base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            "An image data URL does not hold valid base64", param="messages"
        ) from None


def parse_arguments(arguments: str) -> dict[str, Any]:
    """Tool-call arguments (a JSON object in a string, as OpenAI sends them) as a dict,
    for providers that want structured arguments."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        raise InvalidRequestError(
            "Tool call arguments must be a JSON object", param="messages"
        ) from None
    if not isinstance(value, dict):
        raise InvalidRequestError("Tool call arguments must be a JSON object", param="messages")
    return value


def tool_names_by_id(messages: list[ChatMessage]) -> dict[str, str]:
    """Function name of every earlier tool call, for providers whose tool results carry
    the function's name rather than the call's id."""
    return {
        call.id: call.function.name for message in messages for call in message.tool_calls or []
    }


def usage_dict(usage: Usage) -> dict[str, Any]:
    return usage.model_dump()


@dataclass
class ChunkWriter:
    """Builds the `chat.completion.chunk` dicts of one streamed answer.

    The shape follows OpenAI's stream with `include_usage`: the first chunk carries the
    role, the finishing chunk carries `finish_reason`, and a last chunk with no choices
    carries `usage` (`usage` is null on all others)."""

    model: str
    id: str = field(default_factory=lambda: new_id("chatcmpl-"))
    created: int = field(default_factory=lambda: int(time.time()))
    system_fingerprint: str | None = None

    def _chunk(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": choices,
            "usage": usage_dict(usage) if usage is not None else None,
        }

    def delta(
        self, delta: dict[str, Any], finish_reason: FinishReason | None = None
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return self._chunk([choice])

    def role(self) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""})

    def content(self, text: str) -> dict[str, Any]:
        return self.delta({"content": text})

    def tool_call(
        self, index: int, *, call_id: str | None, name: str | None, arguments: str
    ) -> dict[str, Any]:
        """A tool-call delta: the first one for an index names the call, later ones only
        add argument text (OpenAI's convention)."""
        function: dict[str, Any] = {"arguments": arguments}
        call: dict[str, Any] = {"index": index, "function": function}
        if call_id is not None:
            call["id"] = call_id
            call["type"] = "function"
        if name is not None:
            function["name"] = name
        return self.delta({"tool_calls": [call]})

    def finish(self, reason: FinishReason) -> dict[str, Any]:
        return self.delta({}, reason)

    def usage(self, usage: Usage) -> dict[str, Any]:
        return self._chunk([], usage)


def text_chunk(chat_chunk: dict[str, Any]) -> dict[str, Any] | None:
    """The `text_completion` stream chunk for a `chat.completion.chunk` (a chat-only
    provider answering `/v1/completions`); None for a chunk with nothing to say, such
    as the opening role-only delta."""
    choices = []
    for choice in chat_chunk.get("choices") or []:
        text = (choice.get("delta") or {}).get("content") or ""
        if not text and choice.get("finish_reason") is None:
            continue
        choices.append(
            {
                "index": choice.get("index", 0),
                "text": text,
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    if not choices and chat_chunk.get("usage") is None:
        return None
    return {
        "id": str(chat_chunk.get("id", "")).replace("chatcmpl", "cmpl", 1),
        "object": "text_completion",
        "created": chat_chunk.get("created", int(time.time())),
        "model": chat_chunk.get("model", ""),
        "system_fingerprint": chat_chunk.get("system_fingerprint"),
        "choices": choices,
        "usage": chat_chunk.get("usage"),
    }
