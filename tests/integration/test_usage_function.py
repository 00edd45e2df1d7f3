"""The usage function through its real Lambda handler and real API Gateway events:
GET /v1/usage, GET /v1/pricing[/{model}], POST /v1/estimate-cost."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from spine.storage.api_keys import hash_key
from spine.storage.usage import UsageRecord, record_usage
from tests.fakes import Reply, gemini_api, openai_api
from tests.integration.conftest import Env, run_async
from tests.integration.gateway import Gateway, Result

HELLO = [{"role": "user", "content": "Say hello"}]
T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
MARCH = "start=2025-03-01&end=2025-04-01"


def key_id(env: Env, plaintext: str) -> uuid.UUID:
    with psycopg.connect(env.db_url) as conn:
        row = conn.execute(
            "SELECT id FROM api_keys WHERE key_hash = %s", (hash_key(plaintext),)
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def insert(env: Env, *records: UsageRecord) -> None:
    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(env.db_url, autocommit=True) as conn:
            for record in records:
                await record_usage(conn, record)

    run_async(go())


def row(owner: uuid.UUID, n: int, **kw: Any) -> UsageRecord:
    """A ledger row as the chat function writes it for the key `owner`."""
    values: dict[str, Any] = {
        "request_id": f"{owner}-{n}",
        "model": "gpt-test",
        "endpoint": "chat.completions",
        "api_key_id": owner,
        "principal": f"key:{owner}",
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "cost_usd": Decimal("0.01"),
        "created_at": T0,
    }
    return UsageRecord(**{**values, **kw})


def usage(gateway: Gateway, key: str | None, query: str = MARCH) -> Result:
    return gateway.request("GET", "/v1/usage", key=key, query=query)


@pytest.fixture
def two_keys(env: Env) -> tuple[str, uuid.UUID, str, uuid.UUID]:
    """Alice's and Bob's keys, with known usage in March 2025."""
    alice = env.create_key("alice")
    bob = env.create_key("bob")
    a, b = key_id(env, alice), key_id(env, bob)
    insert(
        env,
        row(a, 1),
        row(a, 2, model="gemini-test", cost_usd=Decimal("0.002"), cached_tokens=400),
        row(a, 3, created_at=T0 + timedelta(days=1), status="error", cost_usd=Decimal(0)),
        row(a, 4, created_at=datetime(2025, 2, 28, 23, 59, tzinfo=UTC)),  # before the range
        row(b, 1, cost_usd=Decimal("0.5")),
        row(b, 2, model="claude-test", created_at=T0 + timedelta(days=5)),
    )
    return alice, a, bob, b


# --- totals and breakdowns --------------------------------------------------------------


def test_a_caller_gets_its_totals_and_breakdowns(
    gateway: Gateway, two_keys: tuple[str, uuid.UUID, str, uuid.UUID]
) -> None:
    alice, a, _, _ = two_keys
    # When Alice reads March
    result = usage(gateway, alice)
    # Then she sees her three March rows and nothing of Bob's
    assert result.status == 200, result.body
    body = result.json()
    assert body["object"] == "usage.report"
    assert (body["start"], body["end"]) == ("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")
    assert body["totals"] == {
        "requests": 3,
        "errors": 1,
        "prompt_tokens": 3000,
        "completion_tokens": 300,
        "total_tokens": 3300,
        "cached_tokens": 400,
        "reasoning_tokens": 0,
        "cost_usd": 0.012,
    }
    assert [(m["model"], m["requests"], m["cost_usd"]) for m in body["by_model"]["data"]] == [
        ("gpt-test", 2, 0.01),
        ("gemini-test", 1, 0.002),
    ]
    assert [(d["date"], d["requests"]) for d in body["by_day"]["data"]] == [
        ("2025-03-01", 2),
        ("2025-03-02", 1),
    ]
    assert [(k["api_key_id"], k["requests"]) for k in body["by_key"]["data"]] == [(str(a), 3)]
    assert body["filters"] == {"tenant": None, "principal": f"key:{a}", "key": None, "model": None}


def test_openai_and_gemini_cached_tokens_reach_the_report_at_cached_prices(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # Given one OpenAI and one Gemini call, each reporting cached prompt tokens
    env.fakes.script(
        "openai",
        Reply(openai_api.chat_completion("Hi", usage_body=openai_api.usage(1000, 20, cached=600))),
    )
    env.fakes.script(
        "gemini",
        Reply(gemini_api.response("Salut", usage_body=gemini_api.usage(2000, 10, cached=1500))),
    )
    for model in ("gpt-test", "gemini-test"):
        chat = gateway.request(
            "POST", "/v1/chat/completions", json_body={"model": model, "messages": HELLO},
            key=api_key,
        )  # fmt: skip
        assert chat.status == 200, chat.body
    # When the caller reads today's usage
    result = usage(gateway, api_key, query="group_by=model")
    assert result.status == 200, result.body
    body = result.json()
    # Then cached tokens are counted once, and billed at the cached-input price
    openai_cost = (400 * Decimal("0.15") + 600 * Decimal("0.075") + 20 * Decimal("0.60")) / 10**6
    gemini_cost = (500 * Decimal("0.30") + 1500 * Decimal("0.03") + 10 * Decimal("2.50")) / 10**6
    by_model = {m["model"]: m for m in body["by_model"]["data"]}
    assert by_model["gpt-test"]["prompt_tokens"] == 1000
    assert by_model["gpt-test"]["cached_tokens"] == 600
    assert Decimal(str(by_model["gpt-test"]["cost_usd"])) == openai_cost
    assert by_model["gemini-test"]["prompt_tokens"] == 2000
    assert by_model["gemini-test"]["cached_tokens"] == 1500
    assert Decimal(str(by_model["gemini-test"]["cost_usd"])) == gemini_cost
    totals = body["totals"]
    assert (totals["prompt_tokens"], totals["cached_tokens"]) == (3000, 2100)
    assert Decimal(str(totals["cost_usd"])) == openai_cost + gemini_cost
    # And a report without cache pricing would have been visibly higher
    assert openai_cost < Decimal(1000 * 0.15 + 20 * 0.60) / 10**6
    assert "by_day" not in body and "by_key" not in body


# --- filters ------------------------------------------------------------------------------


def test_filters_by_model_key_and_time(
    gateway: Gateway, two_keys: tuple[str, uuid.UUID, str, uuid.UUID]
) -> None:
    alice, a, _, _ = two_keys
    by_model = usage(gateway, alice, f"{MARCH}&model=gemini-test").json()
    assert by_model["totals"]["requests"] == 1
    assert by_model["totals"]["cached_tokens"] == 400
    by_key = usage(gateway, alice, f"{MARCH}&key={a}").json()
    assert by_key["totals"]["requests"] == 3
    # Unix seconds and ISO 8601 with offsets are both accepted; end is exclusive
    start = int(datetime(2025, 3, 2, tzinfo=UTC).timestamp())
    day_two = usage(gateway, alice, f"start={start}&end=2025-03-03T01:00:00%2B01:00").json()
    assert day_two["totals"]["requests"] == 1
    assert day_two["start"] == "2025-03-02T00:00:00Z"
    # An unknown model is a filter that matches nothing, not an error
    nothing = usage(gateway, alice, f"{MARCH}&model=no-such-model")
    assert nothing.status == 200
    assert nothing.json()["totals"]["requests"] == 0


def test_default_range_is_the_last_30_days(gateway: Gateway, env: Env, api_key: str) -> None:
    k = key_id(env, api_key)
    now = datetime.now(UTC)
    insert(env, row(k, 1, created_at=now - timedelta(days=29)))
    insert(env, row(k, 2, created_at=now - timedelta(days=31)))
    body = usage(gateway, api_key, query="").json()
    assert body["totals"]["requests"] == 1
    start = datetime.fromisoformat(body["start"])
    end = datetime.fromisoformat(body["end"])
    assert end - start == timedelta(days=30)


def test_pages_of_breakdowns(gateway: Gateway, env: Env, api_key: str) -> None:
    k = key_id(env, api_key)
    insert(env, *(row(k, n, created_at=T0 + timedelta(days=n)) for n in range(5)))
    first = usage(gateway, api_key, f"{MARCH}&group_by=day&limit=2").json()["by_day"]
    assert [d["date"] for d in first["data"]] == ["2025-03-01", "2025-03-02"]
    assert first["has_more"] is True
    last = usage(gateway, api_key, f"{MARCH}&group_by=day&limit=2&offset=4").json()["by_day"]
    assert [d["date"] for d in last["data"]] == ["2025-03-05"]
    assert last["has_more"] is False
    past_end = usage(gateway, api_key, f"{MARCH}&group_by=day&offset=50").json()
    assert past_end["by_day"]["data"] == []
    assert past_end["totals"]["requests"] == 5  # totals never page


# --- isolation ------------------------------------------------------------------------------


def test_another_callers_usage_is_invisible(
    gateway: Gateway, two_keys: tuple[str, uuid.UUID, str, uuid.UUID]
) -> None:
    _, a, bob, b = two_keys
    # Bob sees only his own
    mine = usage(gateway, bob).json()
    assert mine["totals"]["requests"] == 2
    assert {k["api_key_id"] for k in mine["by_key"]["data"]} == {str(b)}
    # Naming Alice's key gives nothing, not her rows
    assert usage(gateway, bob, f"{MARCH}&key={a}").json()["totals"]["requests"] == 0
    # Naming Alice as principal is refused
    refused = usage(gateway, bob, f"{MARCH}&principal=key:{a}")
    assert refused.status == 403
    assert refused.error["param"] == "principal"
    assert refused.error["type"] == "permission_error"
    # Naming himself is fine
    assert usage(gateway, bob, f"{MARCH}&principal=key:{b}").status == 200


def test_admin_sees_everyone_and_can_narrow(
    gateway: Gateway, env: Env, two_keys: tuple[str, uuid.UUID, str, uuid.UUID]
) -> None:
    _, a, _, b = two_keys
    admin = env.create_key("ops", scopes=["admin"])
    everyone = usage(gateway, admin).json()
    assert everyone["totals"]["requests"] == 5
    assert everyone["filters"]["principal"] is None
    # by_key is ordered by spend: Bob's 0.51, then Alice's 0.012
    assert [k["api_key_id"] for k in everyone["by_key"]["data"]] == [str(b), str(a)]
    alice_only = usage(gateway, admin, f"{MARCH}&principal=key:{a}").json()
    assert alice_only["totals"]["requests"] == 3
    bob_key = usage(gateway, admin, f"{MARCH}&key={b}").json()
    assert bob_key["totals"]["cost_usd"] == 0.51


def test_usage_needs_a_credential(gateway: Gateway, env: Env) -> None:
    result = usage(gateway, None)
    assert result.status == 401
    assert result.error["type"] == "authentication_error"
    # Auth comes before validation: a bad query still answers 401
    assert usage(gateway, None, "start=garbage").status == 401


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("start=yesterday", "start"),
        ("end=2025-13-45", "end"),
        ("start=2025-03-10&end=2025-03-01", "end"),
        ("start=2025-03-01&end=2025-03-01", "end"),
        ("start=2024-01-01&end=2025-06-01", "start"),  # over 366 days
        ("start=99999999999999999999", "start"),
        ("start=-86400", "start"),
        ("key=not-a-uuid", "key"),
        ("group_by=week", "group_by"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("offset=100001", "offset"),
        ("model=" + "m" * 257, "model"),
        ("colour=blue", "colour"),
        ("model=a&model=b", "model"),
    ],
)
def test_bad_query_is_400_naming_the_field(
    gateway: Gateway, api_key: str, query: str, param: str
) -> None:
    result = usage(gateway, api_key, query)
    assert result.status == 400, result.body
    assert result.error["param"] == param
    assert result.error["type"] == "invalid_request_error"


def test_unknown_parameter_is_named_as_openai_does(gateway: Gateway, api_key: str) -> None:
    result = usage(gateway, api_key, "colour=blue")
    assert result.error["code"] == "unknown_parameter"
    assert "colour" in result.error["message"]


@pytest.mark.parametrize(
    "hostile",
    [
        "gpt-test' OR '1'='1",
        "'; DROP TABLE usage_events; --",
        'gpt-test" UNION SELECT * FROM api_keys --',
        "%' OR 1=1 --",
    ],
)
def test_sql_injection_in_filters_is_harmless(
    gateway: Gateway, env: Env, two_keys: tuple[str, uuid.UUID, str, uuid.UUID], hostile: str
) -> None:
    alice, a, _, _ = two_keys
    admin = env.create_key("ops", scopes=["admin"])
    # A row whose model name IS the hostile text is stored and returned verbatim
    insert(env, row(a, 99, model=hostile))
    from urllib.parse import quote

    as_model = usage(gateway, alice, f"{MARCH}&model={quote(hostile)}")
    assert as_model.status == 200, as_model.body
    assert as_model.json()["totals"]["requests"] == 1
    assert [m["model"] for m in as_model.json()["by_model"]["data"]] == [hostile]
    as_principal = usage(gateway, admin, f"{MARCH}&principal={quote(hostile)}")
    assert as_principal.status == 200
    assert as_principal.json()["totals"]["requests"] == 0
    # And nothing was dropped or widened
    assert usage(gateway, admin).json()["totals"]["requests"] == 6
    assert len(env.usage_rows()) == 7


# --- pricing ----------------------------------------------------------------------------------


def test_pricing_lists_every_model(gateway: Gateway, api_key: str) -> None:
    result = gateway.request("GET", "/v1/pricing", key=api_key)
    assert result.status == 200, result.body
    by_model = {p["model"]: p for p in result.json()["data"]}
    assert set(by_model) == {"gpt-test", "gemini-test", "claude-test", "unconfigured"}
    gpt = by_model["gpt-test"]
    assert (gpt["input"], gpt["cached_input"], gpt["output"]) == (0.15, 0.075, 0.60)
    assert gpt["unit"] == "USD per 1M tokens"
    assert gpt["aliases"] == ["gpt-alias"]
    # Without a cached price in models.yaml, cached input costs the input price
    assert by_model["unconfigured"]["cached_input"] == by_model["unconfigured"]["input"]


def test_pricing_of_one_model_by_id_alias_or_profile(gateway: Gateway, api_key: str) -> None:
    gemini = gateway.request("GET", "/v1/pricing/gemini-test", key=api_key).json()
    assert (gemini["input"], gemini["cached_input"], gemini["output"]) == (0.30, 0.03, 2.50)
    alias = gateway.request("GET", "/v1/pricing/gpt-alias", key=api_key).json()
    assert (alias["model"], alias["resolves_to"]) == ("gpt-alias", "gpt-test")
    profile = gateway.request("GET", "/v1/pricing/default", key=api_key).json()
    assert (profile["resolves_to"], profile["profile"]) == ("gpt-test", "prod")


def test_pricing_of_an_unknown_model_is_404(gateway: Gateway, api_key: str) -> None:
    for name in ("no-such-model", "org/no-such-model", "x' OR '1'='1"):
        result = gateway.request("GET", f"/v1/pricing/{name}", key=api_key)
        assert result.status == 404
        assert result.error["code"] == "model_not_found"
        assert result.error["param"] == "model"


def test_pricing_needs_a_credential(gateway: Gateway, env: Env) -> None:
    assert gateway.request("GET", "/v1/pricing").status == 401


# --- estimate-cost ----------------------------------------------------------------------------


def estimate(gateway: Gateway, key: str, body: object) -> Result:
    return gateway.request("POST", "/v1/estimate-cost", json_body=body, key=key)


def test_estimate_openai_counts_with_the_models_own_tokenizer(
    gateway: Gateway, api_key: str
) -> None:
    result = estimate(gateway, api_key, {"model": "gpt-test", "messages": HELLO, "max_tokens": 100})
    assert result.status == 200, result.body
    body = result.json()
    # gpt-4o-mini uses o200k_base: "user" 1 + "Say hello" 2 + 3 framing + 3 reply priming
    assert body["tokenizer"] == {"method": "o200k_base", "exact": True, "fallback": None}
    assert body["prompt_tokens"] == 9
    assert body["prompt_tokens_range"] == {"min": 9, "max": 9}
    assert (body["completion_tokens"], body["completion_tokens_source"]) == (100, "request")
    uncached = float((9 * Decimal("0.15") + 100 * Decimal("0.60")) / 10**6)
    cached = float((9 * Decimal("0.075") + 100 * Decimal("0.60")) / 10**6)
    assert body["cost_usd"]["without_cache"] == {
        "min": uncached,
        "expected": uncached,
        "max": uncached,
    }
    assert body["cost_usd"]["with_cache"]["expected"] == cached
    assert body["pricing"]["input"] == 0.15
    assert body["fits_context_window"] is True


@pytest.mark.parametrize(
    ("model", "method"),
    [("gemini-test", "o200k_base x 1"), ("claude-test", "o200k_base x 1.2")],
)
def test_estimate_other_providers_is_a_range(
    gateway: Gateway, api_key: str, model: str, method: str
) -> None:
    text = "Summarize the history of the Roman Empire in three paragraphs. " * 20
    result = estimate(gateway, api_key, {"model": model, "prompt": text, "max_tokens": 500})
    assert result.status == 200, result.body
    body = result.json()
    assert body["tokenizer"] == {"method": method, "exact": False, "fallback": None}
    low, high = body["prompt_tokens_range"]["min"], body["prompt_tokens_range"]["max"]
    assert low < body["prompt_tokens"] < high
    costs = body["cost_usd"]
    assert costs["with_cache"]["max"] < costs["without_cache"]["max"]
    assert costs["without_cache"]["min"] < costs["without_cache"]["expected"]
    assert costs["without_cache"]["expected"] < costs["without_cache"]["max"]


def test_estimate_uses_profile_limits_and_system_prompt(gateway: Gateway, api_key: str) -> None:
    with_profile = estimate(gateway, api_key, {"model": "prod", "messages": HELLO}).json()
    plain = estimate(gateway, api_key, {"model": "gpt-test", "messages": HELLO}).json()
    assert (with_profile["completion_tokens"], with_profile["completion_tokens_source"]) == (
        50,
        "profile",
    )
    assert with_profile["resolved_model"] == "gpt-test"
    # The profile's system prompt ("You are terse.") is part of what is sent
    assert with_profile["prompt_tokens"] > plain["prompt_tokens"]
    assert (plain["completion_tokens"], plain["completion_tokens_source"]) == (
        256,
        "assumed_default",
    )


def test_estimate_counts_images_and_tools_with_error_bars(gateway: Gateway, api_key: str) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}
    message = {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}
    body = estimate(gateway, api_key, {"model": "gemini-test", "messages": [message]}).json()
    assert body["prompt_tokens_range"]["min"] >= 258
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    with_tools = estimate(
        gateway, api_key, {"model": "gpt-test", "messages": HELLO, "tools": [tool]}
    ).json()
    assert with_tools["tokenizer"]["exact"] is False
    assert with_tools["prompt_tokens"] > 9


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-test"}, "messages"),
        ({"model": "gpt-test", "messages": HELLO, "prompt": "x"}, "messages"),
        ({"model": "gpt-test", "messages": []}, "messages"),
        ({"model": "gpt-test", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": "gpt-test", "messages": HELLO, "max_tokens": 5000}, "max_tokens"),
        ({"model": "gpt-test", "messages": HELLO, "temperature_x": 1}, "temperature_x"),
        ({"messages": HELLO}, "model"),
        ({"model": "gpt-test", "messages": [{"role": "wizard", "content": "x"}]}, None),
    ],
)
def test_bad_estimate_is_400(
    gateway: Gateway, api_key: str, body: dict[str, Any], param: str | None
) -> None:
    result = estimate(gateway, api_key, body)
    assert result.status == 400, result.body
    if param is not None:
        assert result.error["param"] == param
    else:
        assert result.error["param"].startswith("messages[0]")


def test_estimate_of_an_unknown_model_is_404(gateway: Gateway, api_key: str) -> None:
    result = estimate(gateway, api_key, {"model": "nope", "prompt": "hi"})
    assert result.status == 404
    assert result.error["code"] == "model_not_found"


def test_estimate_keeps_injection_text_as_text(gateway: Gateway, api_key: str) -> None:
    hostile = [{"role": "user", "content": "'; DROP TABLE usage_events; --"}]
    result = estimate(gateway, api_key, {"model": "gpt-test", "messages": hostile})
    assert result.status == 200
    assert result.json()["prompt_tokens"] > 9


# --- estimate-cost of llama.cpp models: the worker's count, else the estimate ----------------
# The exact count against a real worker is tested in tests/worker/test_estimate_with_worker.py
# (it needs the llama-server build and the bundled model).

LLAMACPP_MODELS = """\
version: 1
models:
  - id: local-test
    provider: llamacpp
    model: smollm2-135m
    pricing: {input: 0.02, output: 0.04}
    context_window: 2048
    engine: {gguf: {file: SmolLM2-135M-Instruct.Q4_1.gguf}, context_size: 2048}
"""


def llamacpp_estimate(env: Env, body: dict[str, Any]) -> tuple[Result, float]:
    env.write_models(LLAMACPP_MODELS)
    gateway = Gateway()  # after the test's configuration: settings are read afresh
    try:
        key = env.create_key()
        started = time.monotonic()
        result = estimate(gateway, key, body)
        return result, time.monotonic() - started
    finally:
        gateway.close()


def test_estimate_llamacpp_falls_back_when_the_worker_is_down(env: Env) -> None:
    # Given the configured worker URL is a closed port (config: 127.0.0.1:9)
    text = "Summarize the history of the Roman Empire in three paragraphs. " * 20
    result, took = llamacpp_estimate(env, {"model": "local-test", "prompt": text})
    # Then the estimate still answers, at once, and says it is the offline estimate and why
    assert result.status == 200, result.body
    body = result.json()
    assert body["tokenizer"] == {
        "method": "o200k_base x 1.25", "exact": False, "fallback": "worker_unreachable",
    }  # fmt: skip
    low, high = body["prompt_tokens_range"]["min"], body["prompt_tokens_range"]["max"]
    assert low < body["prompt_tokens"] < high
    assert took < 2


def test_estimate_llamacpp_falls_back_when_the_worker_is_slow(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker that accepts connections but never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("SPINE_WORKER__URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        result, took = llamacpp_estimate(env, {"model": "local-test", "messages": HELLO})
    # Then the estimate gives up on it after its short timeout (2 s), not the chat timeout
    assert result.status == 200, result.body
    assert result.json()["tokenizer"] == {
        "method": "o200k_base x 1.25", "exact": False, "fallback": "worker_timeout",
    }  # fmt: skip
    assert 1.5 < took < 6


def test_estimate_llamacpp_with_images_does_not_ask_the_worker(env: Env) -> None:
    # The engine counts images with its projector, not through /tokenize: no worker call.
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    message = {"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}
    result, _ = llamacpp_estimate(env, {"model": "local-test", "messages": [message]})
    assert result.status == 200, result.body
    assert result.json()["tokenizer"] == {
        "method": "o200k_base x 1.25", "exact": False, "fallback": None,
    }  # fmt: skip
