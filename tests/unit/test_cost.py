"""Cost from models.yaml prices, with cached prompt tokens at the cached price."""

from __future__ import annotations

from decimal import Decimal

from spine.ledger.cost import cost_usd
from spine.registry.schema import Pricing
from spine.schemas.openai import Usage


def test_uncached_prompt_and_output() -> None:
    pricing = Pricing(input=0.15, output=0.60, cached_input=0.075)
    assert cost_usd(pricing, Usage.of(1_000_000, 1_000_000)) == Decimal("0.75")


def test_cached_tokens_are_part_of_prompt_tokens_and_billed_at_cached_price() -> None:
    pricing = Pricing(input=1.25, output=10.0, cached_input=0.125)
    # 1,000 prompt tokens of which 800 were cached; 100 output tokens.
    cost = cost_usd(pricing, Usage.of(1000, 100, cached=800))
    expected = (Decimal(200) * Decimal("1.25") + 800 * Decimal("0.125") + 100 * Decimal(10)) / 10**6
    assert cost == expected


def test_cached_price_defaults_to_input_price() -> None:
    pricing = Pricing(input=2.0, output=0.0)
    assert cost_usd(pricing, Usage.of(500, 0, cached=500)) == Decimal("0.001")


def test_prices_keep_their_decimal_value() -> None:
    pricing = Pricing(input=0.1, output=0.0)
    assert cost_usd(pricing, Usage.of(3, 0)) == Decimal("0.0000003")
