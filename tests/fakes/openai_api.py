"""The OpenAI wire format: chat completions, text completions, models, stream chunks,
and the error bodies OpenAI really sends (field names from openai.types)."""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from tests.fakes.text import count_words, last_user_text, message_text

MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-5", "smollm2-135m"]


def usage(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chat_completion(
    content: str | None = "Hello!",
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    refusal: str | None = None,
    usage_body: dict[str, Any] | None = None,
    completion_id: str = "chatcmpl-fake123",
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "refusal": refusal,
        "annotations": [],
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage_body if usage_body is not None else usage(9, 3),
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def text_completion(text: str, *, model: str, prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": "cmpl-fake123",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": usage(prompt_tokens, count_words(text)),
        "system_fingerprint": None,
    }


def chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fakestream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(model: str, usage_body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fakestream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [],
        "usage": usage_body,
    }


def text_chunk(model: str, text: str, finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "cmpl-fakestream",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "system_fingerprint": None,
    }


def text_completion_events(
    text: str, *, model: str, prompt_tokens: int, body: dict[str, Any]
) -> list[Any]:
    """A streamed text completion: a word per chunk, then the usage chunk if asked."""
    words = text.split(" ")
    events: list[Any] = [text_chunk(model, w if i == 0 else f" {w}") for i, w in enumerate(words)]
    events.append(text_chunk(model, "", "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(
            {**text_chunk(model, ""), "choices": [], "usage": usage(prompt_tokens, len(words))}
        )
    return events


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's embeddings answer: a small deterministic vector per input (its word
    count, its length, 0.5), as floats or, when asked, float32 little-endian base64."""
    inputs = body.get("input", "")
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    dims = int(body.get("dimensions") or 3)
    data = []
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        vector = ([float(count_words(text)), float(len(text)), 0.5] * dims)[:dims]
        value: Any = vector
        if body.get("encoding_format") == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(count_words(i if isinstance(i, str) else " ".join(map(str, i))) for i in items)
    return {
        "object": "list",
        "data": data,
        "model": str(body.get("model", "text-embedding-3-small")),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def default_answer(path: str, body: dict[str, Any]) -> dict[str, Any] | list[Any]:
    """Echo: the reply is "echo: <last user text>"; tokens are counted as words."""
    model = str(body.get("model", "gpt-4o-mini"))
    if path.endswith("/embeddings"):
        return embeddings(body)
    if path.endswith("/models"):
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "openai"}
                for m in MODELS
            ],
        }
    if path.endswith("/completions") and "chat" not in path:
        prompt = body.get("prompt", "")
        prompt = prompt[0] if isinstance(prompt, list) else str(prompt)
        text = f"echo: {prompt}"
        if not body.get("stream"):
            return text_completion(text, model=model, prompt_tokens=count_words(prompt))
        return text_completion_events(
            text, model=model, prompt_tokens=count_words(prompt), body=body
        )
    messages = body.get("messages", [])
    reply = f"echo: {last_user_text(messages)}"
    prompt_tokens = sum(count_words(message_text(m)) for m in messages)
    usage_body = usage(prompt_tokens, count_words(reply))
    if not body.get("stream"):
        return chat_completion(reply, model=model, usage_body=usage_body)
    words = reply.split(" ")
    events: list[Any] = [chunk(model, {"role": "assistant", "content": ""})]
    events += [chunk(model, {"content": w if i == 0 else f" {w}"}) for i, w in enumerate(words)]
    events.append(chunk(model, {}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(usage_chunk(model, usage_body))
    return events


_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "Invalid value for 'temperature'.", None),
    401: (
        "invalid_request_error",
        "Incorrect API key provided: sk-fake***1234. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    ),
    403: ("invalid_request_error", "You are not allowed to sample from this model", None),
    404: (
        "invalid_request_error",
        "The model `gpt-unknown` does not exist or you do not have access to it.",
        "model_not_found",
    ),
    429: (
        "requests",
        "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min "
        "(RPM): Limit 500, Used 500, Requested 1. Please try again in 7s.",
        "rate_limit_exceeded",
    ),
    500: (
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
        None,
    ),
    503: ("server_error", "The engine is currently overloaded, please try again later.", None),
}


def error(
    status: int, message: str | None, kind: str | None, retry_after: float | None
) -> tuple[dict[str, Any], dict[str, str]]:
    error_type, default_message, code = _ERRORS.get(status, ("server_error", "Error", None))
    param = None
    if kind == "context_length":
        default_message = (
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130542 tokens. Please reduce the length of the messages."
        )
        code, param = "context_length_exceeded", "messages"
    elif kind == "insufficient_quota":
        error_type = code = "insufficient_quota"
        default_message = (
            "You exceeded your current quota, please check your plan and billing details."
        )
    headers = {"x-request-id": "req_fake"}
    if status == 429:
        headers.update({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0"})
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = {
        "error": {
            "message": message or default_message,
            "type": error_type,
            "param": param,
            "code": code,
        }
    }
    return body, headers
