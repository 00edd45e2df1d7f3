"""Retries, fallbacks and cooldowns through the real chat handler, against provider
fakes that fail on demand, with a real Postgres (usage rows, shared cooldowns)."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

import pytest

from tests.fakes import Action, Cut, Delay, Fail, Hang, Malformed, Reply, anthropic_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

HELLO = [{"role": "user", "content": "Say hello"}]

# `primary` (OpenAI fake) falls back to `backup` (Anthropic fake, larger window).
# Tiny backoff delays keep the tests fast; the cooldown is short enough to wait out.
MODELS = """\
version: 1
models:
  - id: primary
    provider: openai
    model: gpt-4o-mini
    base_url: {openai_url}
    api_key: {{env: FAKE_OPENAI_KEY}}
    pricing: {{input: 0.15, output: 0.60}}
    context_window: 8000
    capabilities: [chat, streaming, tools]
    timeouts: {{connect: 1, total: 1}}
    retry: {{attempts: 3, budget_seconds: 5, base_delay: 0.01, max_delay: 0.05}}
    cooldown: {{failures: 3, window_seconds: 60, seconds: 1.5}}
    fallbacks: [backup]
  - id: backup
    provider: anthropic
    model: claude-haiku-4-5
    base_url: {anthropic_url}
    api_key: {{env: FAKE_ANTHROPIC_KEY}}
    pricing: {{input: 1.0, output: 5.0}}
    context_window: 200000
    capabilities: [chat, streaming]
    timeouts: {{total: 2}}
"""


@pytest.fixture(autouse=True)
def models(env: Env) -> None:
    env.write_models(
        MODELS.format(openai_url=env.fakes.openai_url, anthropic_url=env.fakes.anthropic_url)
    )


def chat(gateway: Gateway, key: str, **body: object) -> Result:
    return gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "primary", "messages": HELLO, **body},
        key=key,
    )


def meta(row: dict[str, object]) -> dict[str, Any]:
    metadata = row["metadata"]
    assert isinstance(metadata, dict)
    return metadata


def backup_cost(prompt: int, completion: int) -> Decimal:
    return (prompt * Decimal("1.0") + completion * Decimal("5.0")) / 10**6


def test_500_on_every_call_is_retried_then_the_fallback_answers(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script("openai", Fail(500), Fail(500), Fail(500))
    env.fakes.script(
        "anthropic",
        Reply(anthropic_api.message("From backup", usage_body=anthropic_api.usage(12, 3))),
    )
    result = chat(gateway, api_key)
    assert result.status == 200, result.body
    assert result.json()["model"] == "backup"
    assert result.json()["choices"][0]["message"]["content"] == "From backup"
    assert result.headers["x-spine-model"] == "backup"
    assert result.headers["x-spine-fallback-from"] == "primary"
    assert len(env.fakes.requests("openai")) == 3
    assert len(env.fakes.requests("anthropic")) == 1
    [row] = env.usage_rows()
    assert (row["model"], row["resolved_model"], row["provider"]) == (
        "primary",
        "backup",
        "anthropic",
    )
    assert row["status"] == "ok"
    assert row["cost_usd"] == backup_cost(12, 3)
    assert meta(row)["attempts"] == 4
    assert meta(row)["fallback_from"] == "primary"


def test_429_retry_after_is_honoured(gateway: Gateway, env: Env, api_key: str) -> None:
    env.fakes.script("openai", Fail(429, retry_after=0.4))
    started = time.monotonic()
    result = chat(gateway, api_key)
    assert result.status == 200, result.body
    assert result.headers["x-spine-model"] == "primary"
    assert "x-spine-fallback-from" not in result.headers
    assert time.monotonic() - started >= 0.4
    assert len(env.fakes.requests("openai")) == 2
    [row] = env.usage_rows()
    assert row["resolved_model"] == "primary" and meta(row)["attempts"] == 2


def test_retry_after_beyond_the_budget_goes_to_the_fallback_at_once(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script("openai", Fail(429, retry_after=30))
    started = time.monotonic()
    result = chat(gateway, api_key)
    assert result.status == 200 and result.headers["x-spine-model"] == "backup"
    assert time.monotonic() - started < 5
    assert len(env.fakes.requests("openai")) == 1


@pytest.mark.parametrize(("failure", "status"), [(Fail(400), 400), (Fail(404), 404)])
def test_client_errors_are_neither_retried_nor_fallen_back(
    gateway: Gateway, env: Env, api_key: str, failure: Fail, status: int
) -> None:
    env.fakes.script("openai", failure)
    result = chat(gateway, api_key)
    assert result.status == status, result.body
    assert len(env.fakes.requests("openai")) == 1
    assert env.fakes.requests("anthropic") == []
    [row] = env.usage_rows()
    assert (row["status"], row["http_status"], row["cost_usd"]) == ("error", status, 0)


def test_rejected_upstream_key_is_not_retried_but_falls_back(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script("openai", Fail(401))
    result = chat(gateway, api_key)
    assert result.status == 200 and result.headers["x-spine-model"] == "backup"
    assert len(env.fakes.requests("openai")) == 1


def test_hang_past_the_timeout_falls_back_never_hangs(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script("openai", Hang(10), Hang(10), Hang(10))
    started = time.monotonic()
    result = chat(gateway, api_key)
    assert result.status == 200 and result.headers["x-spine-model"] == "backup"
    assert time.monotonic() - started < 6  # three 1 s timeouts, then the fallback


def test_hang_without_a_fallback_is_a_clear_504(gateway: Gateway, env: Env, api_key: str) -> None:
    env.fakes.script("anthropic", Hang(10))
    started = time.monotonic()
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "backup", "messages": HELLO},
        key=api_key,
    )
    assert result.status == 504, result.body
    assert result.error["code"] == "upstream_timeout"
    assert time.monotonic() - started < 5
    [row] = env.usage_rows()
    assert (row["status"], row["http_status"], row["cost_usd"]) == ("error", 504, 0)


def test_malformed_answer_is_retried(gateway: Gateway, env: Env, api_key: str) -> None:
    env.fakes.script("openai", Malformed())
    result = chat(gateway, api_key)
    assert result.status == 200, result.body
    assert result.headers["x-spine-model"] == "primary"
    assert len(env.fakes.requests("openai")) == 2


def test_context_overflow_falls_back_to_a_larger_window(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # The provider says the prompt does not fit (Spine's own estimate let it through)
    env.fakes.script("openai", Fail(400, kind="context_length"))
    result = chat(gateway, api_key)
    assert result.status == 200 and result.headers["x-spine-model"] == "backup"
    assert len(env.fakes.requests("openai")) == 1
    # And a prompt Spine already knows is too big goes straight to the larger model
    big = [{"role": "user", "content": "word " * 9_000}]  # 9,000 tokens: past 8,000
    result = chat(gateway, api_key, messages=big)
    assert result.status == 200 and result.headers["x-spine-model"] == "backup"
    assert len(env.fakes.requests("openai")) == 1


def test_fallback_that_cannot_serve_the_request_is_skipped(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script("openai", Fail(500), Fail(500), Fail(500))
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    result = chat(gateway, api_key, tools=tools)
    assert result.status == 502, result.body
    assert env.fakes.requests("anthropic") == []
    [row] = env.usage_rows()
    assert (row["resolved_model"], row["http_status"]) == ("primary", 502)
    assert meta(row)["attempts"] == 3


def test_cooldown_is_shared_and_ends(env: Env, api_key: str) -> None:
    # Given one instance whose request fails three times on `primary` (the threshold)
    first = Gateway()
    try:
        env.fakes.script("openai", Fail(500), Fail(500), Fail(500))
        assert chat(first, api_key).headers["x-spine-model"] == "backup"
    finally:
        first.close()
    assert len(env.fakes.requests("openai")) == 3
    # When a second instance serves a request, Then it skips the cooled-down model
    second = Gateway()
    try:
        result = chat(second, api_key)
        assert result.status == 200 and result.headers["x-spine-model"] == "backup"
        assert len(env.fakes.requests("openai")) == 3
        # And after the cooldown `primary` serves again
        time.sleep(1.6)
        result = chat(second, api_key)
        assert result.headers["x-spine-model"] == "primary"
        assert len(env.fakes.requests("openai")) == 4
    finally:
        second.close()


def test_stream_failing_before_the_first_chunk_falls_back(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script("openai", Fail(503), Fail(503), Fail(503))
    result = chat(gateway, api_key, stream=True)
    assert result.status == 200, result.body
    assert result.headers["x-spine-model"] == "backup"
    assert result.headers["x-spine-fallback-from"] == "primary"
    text = result.body.decode()
    assert '"model": "backup"' in text or '"model":"backup"' in text
    assert text.rstrip().endswith("data: [DONE]")
    [row] = env.usage_rows()
    assert (row["resolved_model"], row["status"]) == ("backup", "ok")
    assert meta(row)["fallback_from"] == "primary" and meta(row)["stream"] is True
    assert row["cost_usd"] == backup_cost(row["prompt_tokens"], row["completion_tokens"])  # type: ignore[arg-type]


# --- load: 30% injected upstream failures, one healthy fallback ---------------------------

REQUESTS = 1_000
FAILURE_RATE = 0.3
# The faults a deployment really throws, each with the code its failed try is listed
# under in the usage row (hangs are left to test_faults.py: each costs a timeout).
INJECTED: list[tuple[Fail | Malformed | Cut, str]] = [
    (Fail(500), "upstream_error"),
    (Fail(503), "upstream_error"),
    (Fail(429), "rate_limit_exceeded"),
    (Malformed(), "upstream_bad_response"),
    (Cut(), "upstream_error"),
]


def expected_outcomes(actions: list[Action], attempts: int) -> list[tuple[str, list[str]]]:
    """(model that answers, codes of the failed tries) of each request, in order: the
    primary's tries take the scripted actions one by one; after `attempts` failures
    the backup answers."""
    codes = dict(INJECTED)
    queue = iter(actions)
    outcomes = []
    for _ in range(REQUESTS):
        failed: list[str] = []
        while len(failed) < attempts:
            action = next(queue)
            if action not in codes:
                break
            failed.append(codes[action])
        outcomes.append(("backup" if len(failed) == attempts else "primary", failed))
    return outcomes


def test_30_percent_upstream_failures_with_a_healthy_fallback_all_succeed(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # Given `primary` failing 30% of its tries in every way a deployment fails, with
    # no cooldown taking it out of rotation (so every request meets the failure rate)
    env.write_models(
        env.models_path.read_text().replace(
            "cooldown: {failures: 3, window_seconds: 60, seconds: 1.5}",
            "cooldown: {failures: 100000, window_seconds: 60, seconds: 1.5}",
        )
    )
    rng = random.Random(5)
    healthy = Delay(0)
    actions: list[Action] = [
        rng.choice(INJECTED)[0] if rng.random() < FAILURE_RATE else healthy
        for _ in range(REQUESTS * 3)
    ]
    expected = expected_outcomes(actions, attempts=3)
    env.fakes.script("openai", *actions)
    # When 1,000 requests go through the real handler
    request_ids = []
    for index in range(REQUESTS):
        result = chat(gateway, api_key)
        # Then every one succeeds, answered by the model the failures dictate
        assert result.status == 200, (index, result.body)
        assert result.headers["x-spine-model"] == expected[index][0], index
        request_ids.append(result.headers["x-request-id"])
    served_by_backup = sum(1 for model, _ in expected if model == "backup")
    retried = sum(1 for _, failed in expected if failed)
    assert served_by_backup > 10 and retried > 200  # the seed exercises both paths
    tries = sum(len(failed) + (model == "primary") for model, failed in expected)
    assert len(env.fakes.requests("openai")) == tries
    assert len(env.fakes.requests("anthropic")) == served_by_backup
    # And the ledger has exactly one row per request, for the model that answered,
    # billed at that model's price for its tokens only, failed tries listed, unbilled
    rows: list[dict[str, Any]] = env.usage_rows()
    assert [r["request_id"] for r in rows] == request_ids
    for row, (model, failed) in zip(rows, expected, strict=True):
        assert (row["model"], row["resolved_model"]) == ("primary", model)
        assert (row["status"], row["http_status"]) == ("ok", 200)
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
        price_in, price_out = (1, 5) if model == "backup" else (Decimal("0.15"), Decimal("0.6"))
        assert row["cost_usd"] == (
            row["prompt_tokens"] * price_in + row["completion_tokens"] * price_out
        ) / Decimal(10**6)
        if failed:
            assert meta(row)["attempts"] == len(failed) + 1
            assert [f["code"] for f in meta(row)["failures"]] == failed
            assert {f["model"] for f in meta(row)["failures"]} == {"primary"}
            assert meta(row).get("fallback_from") == ("primary" if model == "backup" else None)
        else:
            assert "failures" not in meta(row)
