"""POST /v1/estimate-cost: a request's prompt tokens x the model's prices, as a range.

Output tokens cannot be known before the call; the estimate assumes the request's
output limit (request, then profile, then the model's default `max_tokens`), else
`DEFAULT_OUTPUT_TOKENS`, and says which. Prompt tokens of llama.cpp models are counted by
the worker, exactly, when it answers in time (`spine.pipeline.worker_tokens`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from spine.errors import InvalidRequestError
from spine.pipeline.tokens import TokenCount
from spine.pipeline.worker_tokens import count_prompt_tokens
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import Pricing
from spine.schemas.openai import ChatMessage
from spine.schemas.usage import EstimateCostRequest
from spine.settings import Settings
from spine.usage.pricing import resolved_price_object

DEFAULT_OUTPUT_TOKENS = 256
_PER_MILLION = Decimal(1_000_000)
_QUANTUM = Decimal("0.000000001")  # the ledger's precision: numeric(18,9)


async def estimate_cost(
    request: EstimateCostRequest, registry: Registry, settings: Settings
) -> dict[str, Any]:
    resolved = registry.resolve(request.model)
    if (request.messages is None) == (request.prompt is None):
        raise InvalidRequestError(
            "Send either 'messages' (a chat request) or 'prompt' (text), not both or neither.",
            param="messages",
            code="missing_required_parameter" if request.prompt is None else "invalid_value",
        )
    output, source = _assumed_output(request, resolved)
    count = await count_prompt_tokens(
        resolved.entry,
        settings,
        messages=_with_profile_system_prompt(request.messages, resolved),
        prompt=request.prompt,
        tools=request.tools,
    )
    pricing = resolved.entry.pricing
    return {
        "object": "cost_estimate",
        "model": resolved.requested,
        "resolved_model": resolved.entry.id,
        "provider": resolved.entry.provider.value,
        "prompt_tokens": count.tokens,
        "prompt_tokens_range": {"min": count.low, "max": count.high},
        "completion_tokens": output,
        "completion_tokens_source": source,
        "tokenizer": {"method": count.method, "exact": count.exact, "fallback": count.fallback},
        "fits_context_window": count.tokens + output <= resolved.entry.context_window,
        "pricing": resolved_price_object(resolved),
        "cost_usd": {
            "without_cache": _costs(count, output, pricing, cached=False),
            "with_cache": _costs(count, output, pricing, cached=True),
        },
    }


def _assumed_output(request: EstimateCostRequest, resolved: ResolvedModel) -> tuple[int, str]:
    entry = resolved.entry
    limit, source = request.output_limit(), "request"
    if limit is None and "max_tokens" in resolved.profile_params:
        limit, source = int(resolved.profile_params["max_tokens"]), "profile"
    if limit is None and entry.defaults.max_tokens is not None:
        limit, source = entry.defaults.max_tokens, "model_default"
    if limit is None:
        return min(DEFAULT_OUTPUT_TOKENS, entry.max_output_tokens or DEFAULT_OUTPUT_TOKENS), (
            "assumed_default"
        )
    if entry.max_output_tokens is not None and limit > entry.max_output_tokens:
        param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise InvalidRequestError(
            f"'{param}' is {limit}, above the model's limit of {entry.max_output_tokens} "
            "output tokens.",
            param=param,
            code="invalid_value",
        )
    return limit, source


def _with_profile_system_prompt(
    messages: list[ChatMessage] | None, resolved: ResolvedModel
) -> list[ChatMessage] | None:
    # The chat path adds a profile's system prompt when the request has none; so here.
    if messages is None or not resolved.system_prompt:
        return messages
    if any(m.role in ("system", "developer") for m in messages):
        return messages
    return [ChatMessage(role="system", content=resolved.system_prompt), *messages]


def _costs(count: TokenCount, output: int, pricing: Pricing, *, cached: bool) -> dict[str, float]:
    """Cost for the fewest, expected and most prompt tokens; `cached` prices every
    prompt token at the cached-input price (the best case of a warm cache)."""
    input_price = Decimal(str(pricing.cached_input_or_input if cached else pricing.input))
    output_cost = output * Decimal(str(pricing.output))

    def usd(prompt_tokens: int) -> float:
        return float(
            ((prompt_tokens * input_price + output_cost) / _PER_MILLION).quantize(_QUANTUM)
        )

    return {"min": usd(count.low), "expected": usd(count.tokens), "max": usd(count.high)}
