"""The Gemini Developer API wire format (camelCase JSON, as google.genai.types parses
it): generateContent answers, SSE stream chunks, prompt blocks and google.rpc errors."""

from __future__ import annotations

from typing import Any

from tests.fakes.text import count_words

_SAFE = [
    {"category": c, "probability": "NEGLIGIBLE"}
    for c in (
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    )
]


def usage(
    prompt: int,
    candidates: int,
    *,
    cached: int | None = None,
    thoughts: int | None = None,
    tool_use: int | None = None,
) -> dict[str, Any]:
    """`promptTokenCount` includes `cachedContentTokenCount`, as Gemini reports it;
    `totalTokenCount` = prompt + candidates + toolUsePrompt + thoughts."""
    meta: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + (thoughts or 0) + (tool_use or 0),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if cached is not None:
        meta["cachedContentTokenCount"] = cached
        meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if thoughts is not None:
        meta["thoughtsTokenCount"] = thoughts
    if tool_use is not None:
        meta["toolUsePromptTokenCount"] = tool_use
    return meta


def function_call(name: str, args: dict[str, Any], call_id: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"name": name, "args": args}
    if call_id is not None:
        call["id"] = call_id
    return {"functionCall": call}


def response(
    text: str | None = "Hello!",
    *,
    parts: list[dict[str, Any]] | None = None,
    finish_reason: str | None = "STOP",
    usage_body: dict[str, Any] | None = None,
    model_version: str = "gemini-2.5-flash",
    response_id: str = "fake-response-1",
) -> dict[str, Any]:
    """A generateContent answer; `parts` (thought, functionCall, ...) replace `text`."""
    if parts is None:
        parts = [{"text": text}] if text is not None else []
    candidate: dict[str, Any] = {
        "content": {"parts": parts, "role": "model"},
        "index": 0,
        "safetyRatings": _SAFE,
    }
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    return {
        "candidates": [candidate],
        "usageMetadata": usage_body if usage_body is not None else usage(5, 2),
        "modelVersion": model_version,
        "responseId": response_id,
    }


def blocked_prompt(reason: str = "SAFETY", prompt_tokens: int = 8) -> dict[str, Any]:
    """What Gemini sends when it refuses the prompt itself: no candidates at all."""
    return {
        "promptFeedback": {
            "blockReason": reason,
            "safetyRatings": [
                {
                    "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                    "probability": "HIGH",
                    "blocked": True,
                }
            ],
        },
        "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "fake-blocked-1",
    }


def _last_user_text(body: dict[str, Any]) -> str:
    for content in reversed(body.get("contents", [])):
        if content.get("role", "user") == "user":
            texts = [p["text"] for p in content.get("parts", []) if "text" in p]
            if texts:
                return " ".join(texts)
    return ""


def _prompt_words(body: dict[str, Any]) -> int:
    contents = [*body.get("contents", []), body.get("systemInstruction") or {}]
    return sum(count_words(p.get("text", "")) for c in contents for p in c.get("parts", []))


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """batchEmbedContents: a small deterministic vector per request (its word count,
    its length, 0.5), cut to outputDimensionality."""
    vectors = []
    for item in body.get("requests", []):
        text = " ".join(p.get("text", "") for p in item.get("content", {}).get("parts", []))
        dims = int(item.get("outputDimensionality") or 3)
        vectors.append(
            {"values": ([float(count_words(text)), float(len(text)), 0.5] * dims)[:dims]}
        )
    return {"embeddings": vectors}


def default_answer(method: str, model: str, body: dict[str, Any]) -> dict[str, Any] | list[Any]:
    if method == "batchEmbedContents":
        return embeddings(body)
    reply = f"echo: {_last_user_text(body)}"
    prompt = _prompt_words(body)
    if method == "generateContent":
        return response(reply, usage_body=usage(prompt, count_words(reply)), model_version=model)
    words = reply.split(" ")
    chunks: list[Any] = []
    for i, word in enumerate(words):
        last = i == len(words) - 1
        chunks.append(
            response(
                word if i == 0 else f" {word}",
                finish_reason="STOP" if last else None,
                usage_body=usage(prompt, i + 1),
                model_version=model,
            )
        )
    return chunks


_STATUS = {
    400: (
        "INVALID_ARGUMENT",
        'Invalid JSON payload received. Unknown name "foo": Cannot find field.',
    ),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
    404: (
        "NOT_FOUND",
        "models/gemini-unknown is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    ),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}


def error(
    status: int, message: str | None, kind: str | None, retry_after: float | None
) -> tuple[dict[str, Any], dict[str, str]]:
    rpc_status, default_message = _STATUS.get(status, ("UNKNOWN", "Unknown error"))
    details: list[dict[str, Any]] = []
    if kind == "api_key_invalid":
        default_message = "API key not valid. Please pass a valid API key."
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        )
    elif kind == "context_length":
        default_message = (
            "The input token count (1200000) exceeds the maximum number of tokens allowed "
            "(1048576)."
        )
    if status == 429:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": (
                            "generativelanguage.googleapis.com/generate_content_free_tier_requests"
                        ),
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    }
                ],
            }
        )
        if retry_after is not None:
            # Gemini says how long to wait in the body, not in a header.
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{retry_after:g}s",
                }
            )
    body: dict[str, Any] = {
        "error": {"code": status, "message": message or default_message, "status": rpc_status}
    }
    if details:
        body["error"]["details"] = details
    return body, {}
