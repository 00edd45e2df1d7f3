"""The Anthropic Messages wire format: messages, named SSE events, and error bodies
(field names from anthropic.types)."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.text import count_words, last_user_text, message_text


def usage(
    input_tokens: int,
    output_tokens: int,
    *,
    cache_read: int | None = 0,
    cache_creation: int | None = 0,
) -> dict[str, Any]:
    """`input_tokens` EXCLUDES cache reads and writes, as Anthropic reports it."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_creation,
        "service_tier": "standard",
    }


def tool_use(tool_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def message(
    text: str | None = "Hello!",
    *,
    content: list[dict[str, Any]] | None = None,
    stop_reason: str = "end_turn",
    usage_body: dict[str, Any] | None = None,
    model: str = "claude-sonnet-4-5-20250929",
    message_id: str = "msg_fake123",
) -> dict[str, Any]:
    if content is None:
        content = [{"type": "text", "text": text}] if text is not None else []
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage_body if usage_body is not None else usage(10, 3),
    }


def stream_events(answer: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The named events Anthropic streams for `answer` (a `message` dict)."""
    start = {**answer, "content": [], "stop_reason": None}
    start["usage"] = {**answer["usage"], "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(answer["content"]):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            for i, word in enumerate(block["text"].split(" ")):
                delta = {"type": "text_delta", "text": word if i == 0 else f" {word}"}
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
        elif block["type"] == "thinking":  # its text in pieces, then its signature
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    },
                )
            )
            for i, word in enumerate(block["thinking"].split(" ")):
                delta = {"type": "thinking_delta", "thinking": word if i == 0 else f" {word}"}
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
            delta = {"type": "signature_delta", "signature": block["signature"]}
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        else:  # tool_use: its input arrives as JSON text in pieces
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {**block, "input": {}},
                    },
                )
            )
            raw = json.dumps(block["input"])
            for piece in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": answer["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def prompt_words(body: dict[str, Any]) -> int:
    """The fake's token count of a request: its words."""
    system = body.get("system") or ""
    if isinstance(system, list):
        system = " ".join(block.get("text", "") for block in system)
    return sum(count_words(message_text(m)) for m in body.get("messages", [])) + count_words(system)


def count_tokens(body: dict[str, Any]) -> dict[str, Any]:
    return {"input_tokens": prompt_words(body)}


def default_answer(body: dict[str, Any]) -> dict[str, Any] | list[Any]:
    messages = body.get("messages", [])
    reply = f"echo: {last_user_text(messages)}"
    answer = message(
        reply,
        model=str(body.get("model")),
        usage_body=usage(prompt_words(body), count_words(reply)),
    )
    return stream_events(answer) if body.get("stream") else answer


_ERRORS = {
    400: ("invalid_request_error", 'messages: roles must alternate between "user" and "assistant"'),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: claude-unknown"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    ),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


def error(
    status: int, message: str | None, kind: str | None, retry_after: float | None
) -> tuple[dict[str, Any], dict[str, str]]:
    error_type, default_message = _ERRORS.get(status, ("api_error", "Error"))
    if kind == "context_length":
        default_message = "prompt is too long: 208310 tokens > 200000 maximum"
    headers = {"request-id": "req_fake"}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message or default_message},
        "request_id": "req_fake",
    }
    return body, headers
