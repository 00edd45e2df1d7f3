"""x-ratelimit reset values in OpenAI's duration format, and which counters a
request touches."""

from __future__ import annotations

from decimal import Decimal

import pytest

from spine.auth.principal import KeyLimits, Principal
from spine.limits.admission import counters_for, estimate_tokens
from spine.limits.headers import reset_text
from spine.settings import LimitsSettings


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (0.0, "0ms"), (1.0, "1s"), (12.3, "13s"), (60, "1m0s"), (3723, "1h2m3s")],
)
def test_reset_text(seconds: float, text: str) -> None:
    assert reset_text(seconds) == text


def test_estimate_counts_body_and_allowed_output() -> None:
    assert estimate_tokens(400, 50) == 150
    assert estimate_tokens(401, None) == 101


def test_key_overrides_resolve_without_the_database() -> None:
    key = Principal(
        subject="alice",
        credential="api_key",
        api_key_id="k",
        limits=KeyLimits(rpm=5, tpm=0, daily_budget_usd=None),
    )
    settings = LimitsSettings(default_rpm=100, default_tpm=1000, daily_budget_usd=2.5)
    counters = counters_for(key, settings, None, tokens=10, cost_usd=Decimal("0.01"))
    # rpm from the key, tpm lifted by the key's 0, the daily budget from the config
    assert {(c.metric, c.limit) for c in counters} == {
        ("requests", Decimal(5)),
        ("usd_day", Decimal("2.5")),
    }
    assert not any(c.key_override for c in counters)


def test_nothing_limited_means_no_counters() -> None:
    key = Principal(subject="bob", credential="api_key", api_key_id="k", limits=KeyLimits())
    assert counters_for(key, LimitsSettings(), None, tokens=1, cost_usd=Decimal(0)) == []
