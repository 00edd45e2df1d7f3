"""Native provider batches below the handlers: the models.yaml opt-in and batch
prices, which batches go natively, and the providers' results mapped to OpenAI's
batch output (the real SDK types, no network)."""

from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest
from anthropic.types.messages import MessageBatchIndividualResponse

from spine.batches.native.eligibility import native_plan
from spine.errors import ConfigError
from spine.ledger.cost import cost_usd
from spine.providers.native_batch.anthropic_batch import BatchApi as AnthropicBatchApi
from spine.providers.native_batch.anthropic_batch import _result as anthropic_result
from spine.providers.native_batch.base import NotNative
from spine.providers.native_batch.openai_batch import _result as openai_result
from spine.registry import parse_registry
from spine.registry.resolve import Registry
from spine.schemas.openai import Usage
from tests.fakes import anthropic_api, openai_api


def registry(extra: str = "") -> Registry:
    return parse_registry(
        textwrap.dedent(
            """\
            version: 1
            models:
              - id: native
                provider: openai
                model: gpt-4o-mini
                aliases: [native-alias]
                pricing: {input: 0.15, output: 0.6, cached_input: 0.075}
                context_window: 128000
                batch: native
              - id: claude
                provider: anthropic
                model: claude-haiku-4-5
                pricing: {input: 1.0, output: 5.0, batch_discount: 0.25}
                context_window: 200000
                batch: native
              - id: queued
                provider: openai
                model: gpt-4o
                context_window: 128000
            profiles:
              terse: {model: native, max_tokens: 10}
            """
        )
        + extra
    )


def test_existing_models_stay_queued_at_full_price() -> None:
    entry = registry().get("queued")
    assert entry is not None and entry.batch == "queued"
    assert entry.pricing.batch_discount is None


def test_native_models_cost_half_by_default_or_their_own_discount() -> None:
    usage = Usage.of(1_000_000, 1_000_000, cached=200_000)
    native = registry().get("native")
    assert native is not None
    assert cost_usd(native.batch_pricing, usage) == Decimal("0.3675")  # half of 0.735
    assert cost_usd(native.pricing, usage) == Decimal("0.735")
    claude = registry().get("claude")
    assert claude is not None
    assert cost_usd(claude.batch_pricing, usage) == Decimal("4.5")  # 6.0 less 25%


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            "  - {id: local, provider: openai_compatible, model: m, base_url: 'http://x',"
            " context_window: 100, batch: native}\n",
            "needs a provider with a batch API",
        ),
        (
            "  - {id: split, provider: openai, model: m, context_window: 100, batch: native,"
            " deployments: [{name: a}, {name: b}]}\n",
            "served in one place",
        ),
        (
            "  - {id: free, provider: openai, model: m, context_window: 100,"
            " pricing: {batch_discount: 1.5}}\n",
            "batch_discount",
        ),
        ("  - {id: odd, provider: openai, model: m, context_window: 100, batch: yes}\n", "batch"),
    ],
)
def test_a_wrong_opt_in_is_refused_naming_it(entry: str, problem: str) -> None:
    text = textwrap.dedent(
        """\
        version: 1
        models:
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_registry(text + entry)
    assert problem in str(caught.value)


def summary(*models: str) -> dict[str, object]:
    return {"requests": len(models), "urls": {}, "models": {m: i for i, m in enumerate(models)}}


def test_a_batch_goes_natively_only_when_every_line_names_one_opted_in_model() -> None:
    reg = registry()
    plan = native_plan(summary("native"), "/v1/chat/completions", reg)
    assert plan is not None and plan.resolved.entry.id == "native"
    assert plan.requested_model == "native"
    both = native_plan(summary("native", "native-alias"), "/v1/chat/completions", reg)
    assert both is not None and both.requested_model == "native"  # the entry's id
    for models, endpoint in [
        (("queued",), "/v1/chat/completions"),  # no opt-in
        (("native", "claude"), "/v1/chat/completions"),  # two models
        (("terse",), "/v1/chat/completions"),  # through a profile
        (("native",), "/v1/embeddings"),  # not chat
        (("nope",), "/v1/chat/completions"),  # unknown
    ]:
        assert native_plan(summary(*models), endpoint, reg) is None, models


def test_openai_output_and_error_lines_are_read_back() -> None:
    body = openai_api.chat_completion(
        "hi", model="gpt-4o-mini", usage_body=openai_api.usage(7, 2, cached=3)
    )
    line = {"custom_id": "a", "response": {"status_code": 200, "body": body}, "error": None}
    result = openai_result(line)
    assert result.outcome == "succeeded" and result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.cached_tokens) == (7, 3)
    error_body, _ = openai_api.error(400, None, None, None)
    refused = openai_result(
        {"custom_id": "b", "response": {"status_code": 400, "body": error_body}, "error": None}
    )
    assert (refused.outcome, refused.status_code, refused.body) == ("errored", 400, error_body)
    unrun = {"custom_id": "c", "response": None, "error": {"code": "batch_cancelled"}}
    assert openai_result(unrun).outcome == "cancelled"


def anthropic_line(result: dict[str, object]) -> MessageBatchIndividualResponse:
    return MessageBatchIndividualResponse.model_validate({"custom_id": "x", "result": result})


def test_anthropic_results_become_chat_completions_and_openai_errors() -> None:
    message = anthropic_api.message(
        "hello", usage_body=anthropic_api.usage(10, 4, cache_read=5), model="claude-haiku-4-5"
    )
    ok = anthropic_result(anthropic_line({"type": "succeeded", "message": message}))
    assert ok.outcome == "succeeded" and ok.body is not None and ok.usage is not None
    assert ok.body["object"] == "chat.completion"
    assert ok.body["choices"][0]["message"]["content"] == "hello"
    assert (ok.usage.prompt_tokens, ok.usage.cached_tokens) == (15, 5)
    error, _ = anthropic_api.error(429, None, None, None)
    limited = anthropic_result(anthropic_line({"type": "errored", "error": error}))
    assert limited.outcome == "errored" and limited.status_code == 429
    assert limited.body is not None and limited.body["error"]["code"] == "rate_limit_exceeded"
    assert anthropic_result(anthropic_line({"type": "expired"})).outcome == "expired"
    assert anthropic_result(anthropic_line({"type": "canceled"})).outcome == "cancelled"


def test_a_custom_id_anthropic_refuses_sends_the_batch_down_the_queued_path() -> None:
    from spine.pipeline.targets import target_for
    from spine.schemas.openai import ChatCompletionRequest
    from spine.settings import Settings

    entry = registry().get("claude")
    assert entry is not None
    target = target_for(entry, Settings())
    request = ChatCompletionRequest.model_validate(
        {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    )
    api = AnthropicBatchApi()
    assert api.request_line(target, "ok-1", request)["params"]["model"] == "claude-haiku-4-5"
    with pytest.raises(NotNative):
        api.request_line(target, "has space", request)


def test_gemini_inlined_responses_become_chat_completions_and_openai_errors() -> None:
    from google.genai import types

    from spine.providers.native_batch.gemini_batch import _result as gemini_result
    from tests.fakes import gemini_api

    raw = gemini_api.response(
        "hi there", usage_body=gemini_api.usage(6, 2), model_version="gemini-2.5-flash"
    )
    answered = types.InlinedResponse.model_validate({"response": raw, "metadata": {"key": "req-1"}})
    ok = gemini_result(answered, "gemini-2.5-flash")
    assert (ok.custom_id, ok.outcome) == ("req-1", "succeeded")
    assert ok.body is not None and ok.body["choices"][0]["message"]["content"] == "hi there"
    assert ok.usage is not None and ok.usage.prompt_tokens == 6
    refused = gemini_result(
        types.InlinedResponse.model_validate(
            {"error": {"code": 3, "message": "bad field"}, "metadata": {"key": "req-2"}}
        ),
        "gemini-2.5-flash",
    )
    assert (refused.outcome, refused.status_code) == ("errored", 400)
    assert refused.body is not None and "bad field" in refused.body["error"]["message"]
    blocked = gemini_result(
        types.InlinedResponse.model_validate(
            {"response": gemini_api.blocked_prompt(), "metadata": {"key": "req-3"}}
        ),
        "gemini-2.5-flash",
    )
    assert blocked.outcome == "errored" and blocked.error_code == "content_filter"


def test_discounted_prices_keep_their_decimal_value() -> None:
    from spine.registry.schema import Pricing

    pricing = Pricing(input=0.1, output=0.3, cached_input=0.01).discounted(0.3)
    assert (pricing.input, pricing.output, pricing.cached_input) == (0.07, 0.21, 0.007)
    assert pricing.cache_write_input is None  # still "the input price"
