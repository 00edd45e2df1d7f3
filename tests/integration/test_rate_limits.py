"""Rate limits and budgets through the real chat handler: 429s with Retry-After and
x-ratelimit headers, headers on successes, token settlement, budgets refused before
any provider call, per-model limits from models.yaml."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from spine.storage.api_keys import KeyChanges, hash_key, update_key
from spine.storage.limits import principal_counter_subject
from tests.fakes import Reply, openai_api
from tests.integration.conftest import MODELS_YAML, Env, run_async
from tests.integration.gateway import Gateway, Result

HELLO = [{"role": "user", "content": "Say hello"}]


def set_limits(env: Env, **limits: object) -> None:
    """Give the config.toml a [limits] section."""
    lines = "".join(f"{name} = {value}\n" for name, value in limits.items())
    config = env.root / "config.toml"
    config.write_text(config.read_text() + "\n[limits]\n" + lines)


def key_limits(env: Env, plaintext: str, **limits: object) -> None:
    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(env.db_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT id FROM api_keys WHERE key_hash = %s", (hash_key(plaintext),)
            )
            row = await cur.fetchone()
            assert row is not None
            assert await update_key(conn, row[0], KeyChanges(limits=limits))  # type: ignore[arg-type]

    run_async(go())


def counter(env: Env, subject: str, metric: str) -> Decimal | None:
    with psycopg.connect(env.db_url) as conn:
        row = conn.execute(
            "SELECT used FROM rate_counters WHERE subject = %s AND metric = %s",
            (subject, metric),
        ).fetchone()
    return None if row is None else Decimal(row[0])


def chat(gateway: Gateway, key: str, **extra: object) -> Result:
    body = {"model": "gpt-test", "messages": HELLO, **extra}
    return gateway.request("POST", "/v1/chat/completions", json_body=body, key=key)


def openai_reply(prompt: int = 9, completion: int = 3) -> Reply:
    return Reply(openai_api.chat_completion("Hi", usage_body=openai_api.usage(prompt, completion)))


def test_requests_per_minute_limit_answers_429_with_retry_after_and_headers(
    env: Env, api_key: str
) -> None:
    # Given a default of 2 requests per minute
    set_limits(env, default_rpm=2)
    env.fakes.script("openai", openai_reply(), openai_reply())
    gateway = Gateway()
    try:
        # When three requests arrive
        first, second, third = (chat(gateway, api_key) for _ in range(3))
    finally:
        gateway.close()

    # Then the first two succeed and carry the x-ratelimit headers
    assert (first.status, second.status) == (200, 200), first.body
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    # And the third is a 429 in OpenAI's shape with Retry-After and the headers
    assert third.status == 429, third.body
    assert third.error["code"] == "rate_limit_exceeded"
    assert "requests per minute" in third.error["message"]
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert third.headers["x-ratelimit-limit-requests"] == "2"
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    # And the provider saw only the two admitted requests
    assert len(env.fakes.requests("openai")) == 2


def test_token_reservation_is_settled_to_the_real_usage(env: Env, api_key: str) -> None:
    # Given a tokens-per-minute limit
    set_limits(env, default_tpm=100_000)
    env.fakes.script("openai", openai_reply(1000, 20))
    gateway = Gateway()
    try:
        # When a request allowing 800 output tokens is answered with 1020 tokens
        result = chat(gateway, api_key, max_tokens=800)
    finally:
        gateway.close()

    # Then the headers showed the reservation, and the counter now holds the real use
    assert result.status == 200, result.body
    assert result.headers["x-ratelimit-limit-tokens"] == "100000"
    remaining = int(result.headers["x-ratelimit-remaining-tokens"])
    assert 100_000 - 800 - 100 < remaining < 100_000 - 800
    [row] = env.usage_rows()
    assert (
        counter(env, principal_counter_subject(row["tenant"], str(row["principal"])), "tokens")
        == 1020
    )


def test_tokens_per_minute_limit_refuses_a_request_that_does_not_fit(
    env: Env, api_key: str
) -> None:
    set_limits(env, default_tpm=1000)
    gateway = Gateway()
    try:
        result = chat(gateway, api_key, max_tokens=2000)
    finally:
        gateway.close()
    assert result.status == 429, result.body
    assert "tokens per minute" in result.error["message"]
    assert result.headers["x-ratelimit-limit-tokens"] == "1000"
    assert env.fakes.requests("openai") == []


def test_daily_budget_is_refused_before_the_provider_is_called(env: Env, api_key: str) -> None:
    # Given a key with a daily budget of $0.0001 whose first call costs more
    key_limits(env, api_key, daily_budget_usd=Decimal("0.0001"))
    env.fakes.script("openai", openai_reply(1000, 20), openai_reply())
    gateway = Gateway()
    try:
        first = chat(gateway, api_key)
        # When it calls again
        second = chat(gateway, api_key)
    finally:
        gateway.close()

    # Then the first call went through and the second is refused, naming the budget
    assert first.status == 200, first.body
    assert second.status == 429, second.body
    assert second.error["code"] == "insufficient_quota"
    assert "daily budget of $0.0001" in second.error["message"]
    assert "retry-after" in second.headers
    # And no provider was called for it, nor a usage row written
    assert len(env.fakes.requests("openai")) == 1
    assert len(env.usage_rows()) == 1


def test_key_without_budget_is_not_refused(env: Env, api_key: str) -> None:
    # Given a default daily budget that the key lifts (0: unlimited)
    set_limits(env, daily_budget_usd=0.0000001)
    key_limits(env, api_key, daily_budget_usd=Decimal(0))
    env.fakes.script("openai", openai_reply(1000, 20), openai_reply(1000, 20))
    gateway = Gateway()
    try:
        results = [chat(gateway, api_key) for _ in range(2)]
    finally:
        gateway.close()
    assert [r.status for r in results] == [200, 200]


@pytest.mark.parametrize("limit", [1])
def test_per_model_limit_from_models_yaml_applies_across_keys(env: Env, limit: int) -> None:
    # Given gpt-test limited to 1 request per minute in models.yaml
    fakes = env.fakes
    text = MODELS_YAML.format(
        openai_url=fakes.openai_url, gemini_url=fakes.gemini_url, anthropic_url=fakes.anthropic_url
    ).replace(
        "max_output_tokens: 1000\n", f"max_output_tokens: 1000\n    limits: {{rpm: {limit}}}\n"
    )
    Path(env.models_path).write_text(text)
    one, two = env.create_key("one"), env.create_key("two")
    fakes.script("openai", openai_reply())
    gateway = Gateway()
    try:
        # When two different keys call it
        first, second = chat(gateway, one), chat(gateway, two)
    finally:
        gateway.close()
    # Then the model's limit refuses the second
    assert first.status == 200, first.body
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert second.status == 429, second.body
    assert "model gpt-test" in second.error["message"]
    assert len(fakes.requests("openai")) == 1


def test_no_limits_configured_means_no_headers_and_no_counters(env: Env, api_key: str) -> None:
    env.fakes.script("openai", openai_reply())
    gateway = Gateway()
    try:
        result = chat(gateway, api_key)
    finally:
        gateway.close()
    assert result.status == 200, result.body
    assert "x-ratelimit-limit-requests" not in result.headers
    with psycopg.connect(env.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM rate_counters").fetchone() == (0,)


def test_a_request_refused_before_any_provider_call_gives_its_tokens_back(
    env: Env, api_key: str
) -> None:
    # Given a token limit and a request the route refuses (max_tokens over the model's)
    set_limits(env, default_tpm=100_000)
    gateway = Gateway()
    try:
        result = chat(gateway, api_key, max_tokens=5000)
    finally:
        gateway.close()
    # Then its 5000-token estimate is not left counted
    assert result.status == 400, result.body
    assert result.headers["x-ratelimit-limit-tokens"] == "100000"
    with psycopg.connect(env.db_url) as conn:
        assert conn.execute(
            "SELECT sum(used) FROM rate_counters WHERE metric = 'tokens'"
        ).fetchone() == (0,)


def test_streamed_answer_carries_headers_and_settles_to_its_usage(env: Env, api_key: str) -> None:
    # Given limits, and a streamed request (the fake's default streamed answer)
    set_limits(env, default_rpm=10, default_tpm=100_000)
    gateway = Gateway()
    try:
        result = chat(gateway, api_key, stream=True, max_tokens=500)
    finally:
        gateway.close()
    # Then the stream's response has the headers
    assert result.status == 200, result.body
    assert result.headers["x-ratelimit-remaining-requests"] == "9"
    assert "x-ratelimit-remaining-tokens" in result.headers
    # And the token counter holds the stream's real usage, not the estimate
    [row] = env.usage_rows()
    real = int(str(row["prompt_tokens"])) + int(str(row["completion_tokens"]))
    assert real > 0
    assert (
        counter(env, principal_counter_subject(row["tenant"], str(row["principal"])), "tokens")
        == real
    )
