"""Deployment choice: weighted order, sticky users, per-deployment overrides."""

from __future__ import annotations

from collections import Counter

import pytest

from spine.errors import ConfigError
from spine.pipeline.routing import deployment_order
from spine.registry import parse_registry
from spine.registry.schema import ModelEntry, ProviderKind

MODELS = """\
version: 1
models:
  - id: split
    provider: openai
    model: gpt-4o-mini
    context_window: 8000
    pricing: {input: 1.0, output: 2.0}
    deployments:
      - {name: big, weight: 3}
      - {name: small, weight: 1}
  - id: sticky
    provider: openai
    model: gpt-4o-mini
    context_window: 8000
    sticky_deployments: true
    deployments:
      - {name: control, weight: 9}
      - {name: variant, model: gpt-4o, weight: 1}
  - id: two-providers
    provider: anthropic
    model: claude-haiku-4-5
    context_window: 200000
    pricing: {input: 1.0, output: 5.0}
    deployments:
      - {name: direct}
      - name: via-gateway
        provider: openai_compatible
        base_url: http://127.0.0.1:9/v1
        model: anthropic/claude-haiku-4-5
        pricing: {input: 1.2, output: 6.0}
  - id: single
    provider: openai
    model: gpt-4o-mini
    context_window: 8000
"""


def entry(model_id: str) -> ModelEntry:
    found = parse_registry(MODELS).get(model_id)
    assert found is not None
    return found


def first_choices(model: ModelEntry, users: list[str | None]) -> Counter[str]:
    return Counter(deployment_order(model, user)[0].deployments[0].name for user in users)


def test_first_choice_follows_the_weights() -> None:
    draws = 8000
    counts = first_choices(entry("split"), [None] * draws)
    # 3:1 weights: 75% ± 2.5% (over 5 standard deviations of the binomial).
    assert abs(counts["big"] / draws - 0.75) < 0.025


def test_every_deployment_is_in_the_order_once() -> None:
    for _ in range(50):
        order = deployment_order(entry("split"))
        assert sorted(m.deployments[0].name for m in order) == ["big", "small"]
        assert all(m.id == "split" and len(m.deployments) == 1 for m in order)


def test_a_model_without_deployments_is_itself() -> None:
    model = entry("single")
    assert deployment_order(model, "alice") == [model]


def test_sticky_users_keep_their_deployment() -> None:
    model = entry("sticky")
    for user in ("alice", "bob", "carol", "dave"):
        choices = first_choices(model, [user] * 20)
        assert len(choices) == 1, f"{user} moved between deployments: {choices}"


def test_sticky_users_split_by_weight() -> None:
    users: list[str | None] = [f"user-{n}" for n in range(6000)]
    counts = first_choices(entry("sticky"), users)
    assert abs(counts["control"] / len(users) - 0.9) < 0.02


def test_non_sticky_models_ignore_the_user() -> None:
    counts = first_choices(entry("split"), ["alice"] * 400)
    assert set(counts) == {"big", "small"}


def test_removing_a_deployment_moves_only_its_users() -> None:
    three = parse_registry(
        MODELS.replace(
            "      - {name: variant, model: gpt-4o, weight: 1}\n",
            "      - {name: variant, model: gpt-4o, weight: 1}\n      - {name: third, weight: 2}\n",
        )
    ).get("sticky")
    assert three is not None
    two = entry("sticky")
    users = [f"user-{n}" for n in range(2000)]
    moved = [
        u
        for u in users
        if deployment_order(three, u)[0].deployments[0].name != "third"
        and deployment_order(three, u)[0].deployments[0].name
        != deployment_order(two, u)[0].deployments[0].name
    ]
    assert moved == []


def test_a_deployment_overrides_provider_and_pricing() -> None:
    order = {m.deployments[0].name: m for m in deployment_order(entry("two-providers"))}
    direct, gateway = order["direct"], order["via-gateway"]
    assert direct.provider is ProviderKind.ANTHROPIC and direct.pricing.input == 1.0
    assert gateway.provider is ProviderKind.OPENAI_COMPATIBLE
    assert gateway.pricing.input == 1.2 and gateway.pricing.output == 6.0
    assert gateway.context_window == direct.context_window == 200000


@pytest.mark.parametrize(
    ("deployments", "problem"),
    [
        ("[{name: a}, {name: a}]", "duplicate deployment name(s): a"),
        ("[{name: a, provider: llamacpp}]", "provider 'llamacpp' cannot be mixed"),
        ("[{name: a, provider: openai_compatible}]", "'openai_compatible' needs a 'base_url'"),
        ("[{name: a, weight: 0}]", "greater than 0"),
    ],
)
def test_bad_deployments_are_refused_with_their_line(deployments: str, problem: str) -> None:
    text = f"""\
version: 1
models:
  - id: m
    provider: openai
    model: gpt-4o-mini
    context_window: 8000
    deployments: {deployments}
"""
    with pytest.raises(ConfigError) as caught:
        parse_registry(text)
    assert problem in str(caught.value)
    assert "models.yaml:" in str(caught.value)
