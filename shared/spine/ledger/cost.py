"""Cost in USD of one call.

Cached prompt tokens are billed at the model's `cached_input` price, prompt tokens
written to the provider's cache (Anthropic's `cache_creation_input_tokens`) at
`cache_write_input`, and the rest of the prompt at `input`. Every adapter reports
`prompt_tokens` INCLUDING cached and written tokens (OpenAI's convention; Gemini and
Anthropic answers are normalized to it), so the uncached part is `prompt_tokens -
cached_tokens - cache_write_tokens`. Getting this wrong double-bills
cached tokens, as LiteLLM did for Gemini.
"""

from __future__ import annotations

from decimal import Decimal

from spine.registry.schema import Pricing
from spine.schemas.openai import Usage

_PER_MILLION = Decimal(1_000_000)


def _price(value: float) -> Decimal:
    # Through str, so 0.15 stays 0.15 rather than the binary float's long expansion.
    return Decimal(str(value))


def cost_usd(pricing: Pricing, usage: Usage) -> Decimal:
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    uncached = usage.prompt_tokens - cached - written
    total = (
        uncached * _price(pricing.input)
        + cached * _price(pricing.cached_input_or_input)
        + written * _price(pricing.cache_write_input_or_input)
        + usage.completion_tokens * _price(pricing.output)
    )
    return total / _PER_MILLION
