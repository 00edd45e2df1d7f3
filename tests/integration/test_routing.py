"""Weighted deployments through the real chat handler: traffic splits by weight, a
failing deployment hands over to another of the same model, cooldowns are kept per
deployment, a deployment may be another provider, sticky users stay put."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from tests.fakes import Fail, Reply, anthropic_api, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

HELLO = [{"role": "user", "content": "Say hello"}]

# One OpenAI fake serves both deployments of `split`; the provider model name the
# fake receives says which deployment was called.
MODELS = """\
version: 1
models:
  - id: split
    provider: openai
    model: gpt-a
    base_url: {openai_url}
    api_key: {{env: FAKE_OPENAI_KEY}}
    pricing: {{input: 1.0, output: 2.0}}
    context_window: 8000
    cooldown: {{failures: 1, window_seconds: 60, seconds: 60}}
    deployments:
      - {{name: dep-a, model: gpt-a, weight: 1}}
      - {{name: dep-b, model: gpt-b, weight: 1}}
  - id: mixed
    provider: anthropic
    model: claude-haiku-4-5
    base_url: {anthropic_url}
    api_key: {{env: FAKE_ANTHROPIC_KEY}}
    pricing: {{input: 1.0, output: 5.0}}
    context_window: 200000
    deployments:
      - {{name: direct}}
      - name: via-openai
        provider: openai_compatible
        base_url: {openai_url}
        model: claude-via-gateway
        api_key: {{env: FAKE_OPENAI_KEY}}
        pricing: {{input: 2.0, output: 10.0}}
  - id: ab
    provider: openai
    model: control-model
    base_url: {openai_url}
    api_key: {{env: FAKE_OPENAI_KEY}}
    context_window: 8000
    sticky_deployments: true
    deployments:
      - {{name: control, weight: 1}}
      - {{name: variant, model: variant-model, weight: 1}}
"""

MODEL_OF = {"dep-a": "gpt-a", "dep-b": "gpt-b"}


@pytest.fixture(autouse=True)
def models(env: Env) -> None:
    env.write_models(
        MODELS.format(openai_url=env.fakes.openai_url, anthropic_url=env.fakes.anthropic_url)
    )


def chat(gateway: Gateway, key: str, model: str = "split") -> Result:
    return gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": model, "messages": HELLO},
        key=key,
    )


def test_traffic_splits_across_deployments_and_says_which_served(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    served: Counter[str] = Counter()
    for _ in range(40):
        result = chat(gateway, api_key)
        assert result.status == 200, result.body
        deployment = result.headers["x-spine-deployment"]
        assert env.fakes.last("openai").json["model"] == MODEL_OF[deployment]
        assert result.json()["model"] == "split"
        served[deployment] += 1
    # Even weights: each side is chosen with p = 1/2; both unseen in 40 has p = 2^-39.
    assert set(served) == {"dep-a", "dep-b"}
    rows = env.usage_rows()
    assert Counter(str(row["deployment"]) for row in rows) == served


def test_a_failing_deployment_hands_over_to_another_of_the_same_model(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script("openai", Fail(500))
    result = chat(gateway, api_key)
    assert result.status == 200, result.body
    first, second = (request.json["model"] for request in env.fakes.requests("openai"))
    assert first != second
    assert MODEL_OF[result.headers["x-spine-deployment"]] == second
    # The same model answered: not a fallback.
    assert "x-spine-fallback-from" not in result.headers
    [row] = env.usage_rows()
    assert row["status"] == "ok" and row["resolved_model"] == "split"
    metadata = row["metadata"]
    assert isinstance(metadata, dict)
    failed = {name for name, model in MODEL_OF.items() if model == first}
    assert [f["deployment"] for f in metadata["failures"]] == list(failed)


def test_a_cooled_deployment_gets_no_traffic_while_the_other_serves(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script("openai", Fail(500))
    assert chat(gateway, api_key).status == 200
    cooled_model = env.fakes.requests("openai")[0].json["model"]
    env.fakes.reset()
    for _ in range(15):
        result = chat(gateway, api_key)
        assert result.status == 200, result.body
        assert MODEL_OF[result.headers["x-spine-deployment"]] != cooled_model
    assert all(r.json["model"] != cooled_model for r in env.fakes.requests("openai"))


def test_a_deployment_can_be_another_provider_with_its_own_prices(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script(
        "anthropic",
        *[Reply(anthropic_api.message("direct", usage_body=anthropic_api.usage(10, 2)))] * 30,
    )
    env.fakes.script(
        "openai",
        *[Reply(openai_api.chat_completion("gateway", usage_body=openai_api.usage(10, 2)))] * 30,
    )
    providers: Counter[str] = Counter()
    for _ in range(30):
        result = chat(gateway, api_key, model="mixed")
        assert result.status == 200, result.body
        provider = result.headers["x-spine-provider"]
        expected = "direct" if provider == "anthropic" else "gateway"
        assert result.json()["choices"][0]["message"]["content"] == expected
        providers[provider] += 1
    assert set(providers) == {"anthropic", "openai_compatible"}
    assert all(r.json["model"] == "claude-via-gateway" for r in env.fakes.requests("openai"))
    costs = {(row["provider"], row["deployment"]): row["cost_usd"] for row in env.usage_rows()}
    assert costs[("anthropic", "direct")] == (10 * Decimal(1) + 2 * Decimal(5)) / 10**6
    assert costs[("openai_compatible", "via-openai")] == (10 * Decimal(2) + 2 * Decimal(10)) / 10**6


def test_sticky_models_keep_each_user_on_one_deployment(gateway: Gateway, env: Env) -> None:
    seen: dict[str, set[str]] = {}
    for n in range(20):
        key = env.create_key(f"user-{n}", principal=f"user-{n}")
        seen[key] = {chat(gateway, key, model="ab").headers["x-spine-deployment"] for _ in range(4)}
    assert all(len(deployments) == 1 for deployments in seen.values()), seen
    # Even weights over 20 users: all on one side has p = 2^-19.
    assert set().union(*seen.values()) == {"control", "variant"}
