"""Prices from models.yaml as the pricing endpoints show them (USD per 1M tokens)."""

from __future__ import annotations

from typing import Any

from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import ModelEntry

UNIT = "USD per 1M tokens"


def price_object(entry: ModelEntry) -> dict[str, Any]:
    pricing = entry.pricing
    return {
        "object": "model.pricing",
        "model": entry.id,
        "provider": entry.provider.value,
        "currency": "usd",
        "unit": UNIT,
        "input": pricing.input,
        # Prompt tokens the provider reports as served from its cache; equal to
        # `input` where models.yaml sets no cached price.
        "cached_input": pricing.cached_input_or_input,
        "output": pricing.output,
        "aliases": list(entry.aliases),
    }


def resolved_price_object(resolved: ResolvedModel) -> dict[str, Any]:
    body = price_object(resolved.entry)
    if resolved.requested != resolved.entry.id:
        body["model"] = resolved.requested
        body["resolves_to"] = resolved.entry.id
    if resolved.profile is not None:
        body["profile"] = resolved.profile
    return body


def price_list(registry: Registry) -> dict[str, Any]:
    return {"object": "list", "data": [price_object(entry) for entry in registry.models]}
