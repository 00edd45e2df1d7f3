"""The headers of a model call's answer: which model, provider and deployment
answered, at what cost, and whether the response cache or a fallback took part."""

from __future__ import annotations

from spine.pipeline.context import CallResult


def call_headers(result: CallResult) -> dict[str, str]:
    """Which model, provider and deployment answered, and what it cost."""
    return {
        **stream_headers(result),
        "x-spine-cost-usd": f"{result.cost:.9f}",
        "openai-processing-ms": str(round(result.latency_ms)),
    }


def stream_headers(result: CallResult) -> dict[str, str]:
    """Who answers a stream; its cost is known only at the end (the usage row).
    `x-spine-fallback-from` names the requested model when a fallback answered."""
    headers = {
        "x-spine-model": result.resolved.entry.id,
        "x-spine-provider": result.target.provider.value,
        "x-spine-deployment": result.target.deployment,
    }
    if result.fallback_from is not None:
        headers["x-spine-fallback-from"] = result.fallback_from
    if result.cache is not None:  # only when the response cache took part
        headers["x-cache"] = result.cache
    if result.dropped_params:  # fields the answering provider does not take
        headers["x-spine-dropped-params"] = ",".join(result.dropped_params)
    return headers
