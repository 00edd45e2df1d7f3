"""Anthropic's prompt caching through the OpenAI-shaped API: `cache_control` on content
parts reaches Claude models (system parts too) and is dropped for OpenAI; tokens the
provider writes to its cache are billed at the model's `cache_write_input` price, not
the plain input price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.fakes import Reply, anthropic_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway

BREAKPOINT = {"type": "ephemeral"}
MESSAGES: list[Any] = [
    {
        "role": "system",
        "content": [
            {"type": "text", "text": "A long shared context.", "cache_control": BREAKPOINT}
        ],
    },
    {
        "role": "user",
        "content": [{"type": "text", "text": "Question?", "cache_control": BREAKPOINT}],
    },
]


def test_cache_breakpoints_reach_claude_and_writes_are_billed_at_the_write_price(
    env: Env, api_key: str
) -> None:
    # Given Claude's prices with a cache-write price (1.25x input)
    env.write_models(
        env.models_path.read_text().replace(
            "pricing: {input: 1.0, output: 5.0, cached_input: 0.1}",
            "pricing: {input: 1.0, output: 5.0, cached_input: 0.1, cache_write_input: 1.25}",
        )
    )
    usage = {**anthropic_api.usage(10, 3), "cache_creation_input_tokens": 1000,
             "cache_read_input_tokens": 200}  # fmt: skip
    env.fakes.script("anthropic", Reply(anthropic_api.message("Answer.", usage_body=usage)))
    gateway = Gateway()
    try:
        result = gateway.request(
            "POST",
            "/v1/chat/completions",
            json_body={"model": "claude-test", "messages": MESSAGES},
            key=api_key,
        )
    finally:
        gateway.close()
    assert result.status == 200, result.body
    # Then Claude got the breakpoints, on the system prompt and the user's part
    sent = env.fakes.last("anthropic").json
    assert sent["system"] == [
        {"type": "text", "text": "A long shared context.", "cache_control": BREAKPOINT}
    ]
    assert sent["messages"][0]["content"][0]["cache_control"] == BREAKPOINT
    # And the usage names the written tokens
    details = result.json()["usage"]["prompt_tokens_details"]
    assert details == {"cached_tokens": 200, "cache_write_tokens": 1000}
    # And the cost: 10 uncached at 1.0, 200 read at 0.1, 1000 written at 1.25, 3 out at 5.0
    expected = (Decimal(10) * 1 + Decimal(200) * Decimal("0.1") + Decimal(1000) * Decimal("1.25")
                + Decimal(3) * 5) / 1_000_000  # fmt: skip
    [row] = env.usage_rows()
    assert Decimal(str(row["cost_usd"])) == expected


def test_openai_gets_no_cache_breakpoints(gateway: Gateway, env: Env, api_key: str) -> None:
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "gpt-test", "messages": MESSAGES},
        key=api_key,
    )
    assert result.status == 200, result.body
    sent = env.fakes.last("openai").json
    assert "cache_control" not in str(sent["messages"])
    assert "cache_write_tokens" not in result.json()["usage"]["prompt_tokens_details"]
