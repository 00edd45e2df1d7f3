"""Exact prompt-token counts for llama.cpp models, from the worker's `POST /v1/tokenize`.

The worker renders the messages with the model's own chat template and tokenizes them
with the model's own vocabulary (its llama-server), so the count equals the
`prompt_tokens` the model will report. When the worker cannot answer within
`WORKER_TIMEOUT_SECONDS` (down, loading the model, slow, not configured) the caller gets
the offline estimate of `spine.pipeline.tokens` instead, and the reason: an estimate must
never wait long or fail because the worker is away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING, Any

from spine.errors import SpineError
from spine.observability import get_logger
from spine.pipeline.targets import target_for
from spine.pipeline.tokens import TokenCount, count_prompt
from spine.registry.schema import ModelEntry, ProviderKind
from spine.schemas.openai import ChatMessage, Tool
from spine.settings import Settings

if TYPE_CHECKING:
    import ssl

logger = get_logger(__name__)

WORKER_METHOD = "llamacpp_worker"  # `tokenizer.method` of a count made by the worker
WORKER_TIMEOUT_SECONDS = 2.0


class WorkerCountUnavailableError(Exception):
    """The worker gave no count; `reason` is a short code safe to show a client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def count_prompt_tokens(
    entry: ModelEntry,
    settings: Settings,
    *,
    messages: Sequence[ChatMessage] | None = None,
    prompt: str | None = None,
    tools: Sequence[Tool] | None = None,
) -> TokenCount:
    """`count_prompt`, but exact for llama.cpp models whenever the worker answers."""
    images = messages is not None and any(m.has_images() for m in messages)
    if entry.provider is not ProviderKind.LLAMACPP or images:
        # Images: the engine counts them by its own projector, not through /tokenize.
        return count_prompt(entry, messages=messages, prompt=prompt, tools=tools)
    try:
        tokens = await worker_count(entry, settings, messages=messages, prompt=prompt, tools=tools)
    except WorkerCountUnavailableError as exc:
        estimate = count_prompt(entry, messages=messages, prompt=prompt, tools=tools)
        return replace(estimate, fallback=exc.reason)
    return TokenCount(tokens=tokens, low=tokens, high=tokens, method=WORKER_METHOD, exact=True)


async def worker_count(
    entry: ModelEntry,
    settings: Settings,
    *,
    messages: Sequence[ChatMessage] | None,
    prompt: str | None,
    tools: Sequence[Tool] | None,
) -> int:
    """The worker's count for a llama.cpp model; raises WorkerCountUnavailableError."""
    import httpx  # noqa: PLC0415 - only the calls that need it pay for the HTTP client

    try:
        target = target_for(entry, settings)
    except SpineError as exc:
        logger.warning(
            "worker token count skipped", extra={"model": entry.id, "reason": exc.message}
        )
        raise WorkerCountUnavailableError("worker_not_configured") from exc
    assert target.base_url is not None  # target_for always gives a llamacpp entry one
    body: dict[str, Any] = {"model": target.model}
    if messages is not None:
        body["messages"] = [_worker_message(m) for m in messages]
        if tools:
            body["tools"] = [t.model_dump(exclude_none=True, by_alias=True) for t in tools]
    else:
        body["prompt"] = prompt
    try:
        async with httpx.AsyncClient(timeout=WORKER_TIMEOUT_SECONDS, verify=_tls()) as client:
            response = await client.post(
                target.base_url.rstrip("/") + "/tokenize",
                json=body,
                headers={"Authorization": f"Bearer {target.api_key}"},
            )
    except httpx.TimeoutException as exc:
        _log_unavailable(entry, "worker_timeout", type(exc).__name__)
        raise WorkerCountUnavailableError("worker_timeout") from exc
    except httpx.HTTPError as exc:
        _log_unavailable(entry, "worker_unreachable", type(exc).__name__)
        raise WorkerCountUnavailableError("worker_unreachable") from exc
    count = _count_of(response)
    if count is None:
        _log_unavailable(entry, "worker_error", f"HTTP {response.status_code}")
        raise WorkerCountUnavailableError("worker_error")
    return count


@cache
def _tls() -> ssl.SSLContext:
    # A client per call (a cached one would outlive the event loop it was made on), but
    # one TLS context: loading the CA bundle is most of what creating a client costs.
    import httpx  # noqa: PLC0415 - only the calls that need it pay for the HTTP client

    return httpx.create_ssl_context()


def _worker_message(message: ChatMessage) -> dict[str, Any]:
    # As the chat path sends it to the worker (spine.providers.openai_provider): local
    # chat templates know system, not developer.
    fields = message.model_dump(exclude_none=True, by_alias=True)
    if fields["role"] == "developer":
        fields["role"] = "system"
    return fields


def _count_of(response: Any) -> int | None:
    if response.status_code != 200:
        return None
    try:
        count = response.json().get("count")
    except (ValueError, AttributeError):
        return None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _log_unavailable(entry: ModelEntry, reason: str, detail: str) -> None:
    logger.warning(
        "worker token count unavailable, using the estimate",
        extra={"model": entry.id, "reason": reason, "detail": detail},
    )
