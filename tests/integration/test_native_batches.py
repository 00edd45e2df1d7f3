"""Native provider batches end to end: the official `openai` client against `spine
local` (embedded S3 + SQS, the batch function's schedule run every fraction of a
second), models that opt in with `batch: native`, the OpenAI, Anthropic and Gemini
batch API wire fakes, usage rows in a real Postgres."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from spine.batches.handler import handler
from tests.integration.conftest import Env
from tests.integration.emulator import running_emulator
from tests.integration.test_batches import (  # the helpers of queued batches
    batch_rows,
    file_lines,
    jsonl,
    sdk,
    wait_for,
)

NATIVE_MODELS = """\
  - id: gpt-native
    provider: openai
    model: gpt-4o-mini
    base_url: {openai_url}
    api_key: {{env: FAKE_OPENAI_KEY}}
    pricing: {{input: 0.15, output: 0.60}}
    context_window: 8000
    batch: native
  - id: claude-native
    provider: anthropic
    model: claude-haiku-4-5
    base_url: {anthropic_url}
    api_key: {{env: FAKE_ANTHROPIC_KEY}}
    pricing: {{input: 1.0, output: 5.0}}
    context_window: 200000
    max_output_tokens: 100
    batch: native
  - id: gemini-native
    provider: gemini
    model: gemini-2.5-flash
    base_url: {gemini_url}
    api_key: {{env: FAKE_GEMINI_KEY}}
    pricing: {{input: 0.30, output: 2.50}}
    context_window: 100000
    batch: native
"""
# The schedule's rate(5 minutes), every 0.6 s.
TIME_SCALE = 0.002


def native_stack(env: Env, endpoint: str, *, time_scale: float = TIME_SCALE) -> Any:
    """`spine local` with the native models, its schedule sped up."""
    env.add_model(
        NATIVE_MODELS.format(
            openai_url=env.fakes.openai_url,
            anthropic_url=env.fakes.anthropic_url,
            gemini_url=env.fakes.gemini_url,
        )
    )
    return running_emulator(env, pool_size=2, aws_endpoint=endpoint, time_scale=time_scale)


@pytest.fixture
def stack(env: Env, aws_endpoint: str) -> Iterator[str]:
    with native_stack(env, aws_endpoint) as url:
        yield url


def lines(model: str, count: int) -> bytes:
    return jsonl(
        [
            json.dumps(
                {
                    "custom_id": f"req-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": model,
                        "messages": [{"role": "user", "content": f"question number {i}"}],
                    },
                }
            )
            for i in range(count)
        ]
    )


def submit(client: openai.OpenAI, content: bytes) -> Any:
    uploaded = client.files.create(file=("in.jsonl", content), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def submitted(client: openai.OpenAI, env: Env, provider: str, batch_id: str) -> Any:
    """The provider's batch, once the schedule submitted it (the batch in progress)."""
    deadline = time.monotonic() + 30
    while client.batches.retrieve(batch_id).status == "validating":
        assert time.monotonic() < deadline, "the schedule never submitted the batch"
        time.sleep(0.1)
    assert client.batches.retrieve(batch_id).status == "in_progress"
    [provider_batch] = env.fakes.provider_batches(provider)
    return provider_batch


def assert_billed_at_half_price(
    env: Env, batch_id: str, *, succeeded: int, refused: int, prices: tuple[str, str]
) -> None:
    """One usage row per answered line: the successes at half the model's (input,
    output) prices, the refusals at no cost."""
    rows = batch_rows(env, batch_id)
    ok = [r for r in rows if r["status"] == "ok"]
    assert (len(ok), len(rows) - len(ok)) == (succeeded, refused)
    prompt = sum(int(r["prompt_tokens"]) for r in ok)
    completion = sum(int(r["completion_tokens"]) for r in ok)
    assert prompt > 0 and completion > 0
    half = (Decimal(prices[0]) * prompt + Decimal(prices[1]) * completion) / 2 / 1_000_000
    assert sum(Decimal(r["cost_usd"]) for r in ok) == pytest.approx(half)
    assert all(Decimal(r["cost_usd"]) == 0 for r in rows if r["status"] != "ok")


def test_an_openai_batch_goes_natively_and_is_billed_once_at_half_price(
    stack: str, env: Env, api_key: str
) -> None:
    # Given five lines for a model that opts in, one of which the provider refuses
    env.fakes.fail_batch_requests("req-3")
    client = sdk(stack, api_key)
    # When the batch is created
    batch = submit(client, lines("gpt-native", 5))
    # Then the schedule sends it whole to OpenAI's batch API, with the provider's model
    assert batch.status == "validating"
    provider_batch = submitted(client, env, "openai", batch.id)
    assert [r["custom_id"] for r in provider_batch.requests] == [f"req-{i}" for i in range(5)]
    assert {r["body"]["model"] for r in provider_batch.requests} == {"gpt-4o-mini"}
    assert not env.fakes.requests("openai") or all(
        r.path != "/v1/chat/completions" for r in env.fakes.requests("openai")
    )
    # And another tenant cannot see it
    globex = sdk(stack, env.create_key("globex", principal="bob", tenant="globex"))
    with pytest.raises(openai.NotFoundError):
        globex.batches.retrieve(batch.id)
    time.sleep(1.5)  # polls while the provider runs it
    assert client.batches.retrieve(batch.id).status == "in_progress"

    # When the provider ends it
    env.fakes.end_batches()
    done = wait_for(client, batch.id, timeout=60)
    # Then the output holds the answers in OpenAI's format, the refused line is in
    # the error file, every custom_id once
    assert done.status == "completed", done
    output = file_lines(client, done.output_file_id)
    errors = file_lines(client, done.error_file_id)
    assert sorted(line["custom_id"] for line in output + errors) == [f"req-{i}" for i in range(5)]
    assert [line["custom_id"] for line in errors] == ["req-3"]
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["message"]
    first = output[0]
    assert first["response"]["request_id"] == f"{batch.id}:{first['custom_id']}"
    assert first["response"]["body"]["object"] == "chat.completion"
    assert first["response"]["body"]["model"] == "gpt-native"
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (4, 1)
    # And one usage row per answered line, at half the model's price
    assert_billed_at_half_price(env, batch.id, succeeded=4, refused=1, prices=("0.15", "0.60"))
    # When the schedule keeps running
    time.sleep(2)
    # Then nothing is billed twice
    assert len(batch_rows(env, batch.id)) == 5


def test_an_anthropic_batch_maps_results_errors_and_expiry(
    stack: str, env: Env, api_key: str
) -> None:
    # Given four lines for Claude, one refused by the provider
    env.fakes.fail_batch_requests("req-1")
    client = sdk(stack, api_key)
    batch = submit(client, lines("claude-native", 4))
    provider_batch = submitted(client, env, "anthropic", batch.id)
    params = provider_batch.requests[0]["params"]
    assert params["model"] == "claude-haiku-4-5" and params["max_tokens"] == 100
    assert params["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "question number 0"}]}
    ]
    # When the provider's window passes after three ran
    env.fakes.end_batches(ran=3)
    done = wait_for(client, batch.id, timeout=60)
    # Then the batch expired: answers translated to chat completions, the refusal
    # and the unrun request in the error file
    assert done.status == "expired", done
    output = file_lines(client, done.output_file_id)
    errors = {line["custom_id"]: line for line in file_lines(client, done.error_file_id)}
    assert sorted(line["custom_id"] for line in output) == ["req-0", "req-2"]
    body = output[0]["response"]["body"]
    assert body["object"] == "chat.completion" and body["model"] == "claude-native"
    assert body["choices"][0]["message"]["content"].startswith("echo: question number")
    assert errors["req-1"]["response"]["status_code"] == 400
    assert errors["req-3"]["response"] is None
    assert errors["req-3"]["error"]["code"] == "batch_expired"
    assert_billed_at_half_price(env, batch.id, succeeded=2, refused=1, prices=("1.0", "5.0"))


def test_a_gemini_batch_goes_natively_as_inlined_requests(
    stack: str, env: Env, api_key: str
) -> None:
    # Given three lines for Gemini, one refused by the provider
    env.fakes.fail_batch_requests("req-2")
    client = sdk(stack, api_key)
    batch = submit(client, lines("gemini-native", 3))
    provider_batch = submitted(client, env, "gemini", batch.id)
    assert provider_batch.model == "gemini-2.5-flash"
    first = provider_batch.requests[0]
    assert first["metadata"] == {"key": "req-0"}
    assert first["request"]["contents"] == [
        {"role": "user", "parts": [{"text": "question number 0"}]}
    ]
    # When the job succeeds
    env.fakes.end_batches()
    done = wait_for(client, batch.id, timeout=60)
    # Then the answers are chat completions, the refusal a 400 in the error file
    assert done.status == "completed", done
    output = file_lines(client, done.output_file_id)
    errors = file_lines(client, done.error_file_id)
    assert sorted(line["custom_id"] for line in output) == ["req-0", "req-1"]
    assert output[0]["response"]["body"]["model"] == "gemini-native"
    assert output[0]["response"]["body"]["choices"][0]["message"]["content"].startswith("echo:")
    assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("req-2", 400)]
    assert_billed_at_half_price(env, batch.id, succeeded=2, refused=1, prices=("0.30", "2.50"))


def test_cancel_is_forwarded_to_the_provider(stack: str, env: Env, api_key: str) -> None:
    client = sdk(stack, api_key)
    batch = submit(client, lines("claude-native", 3))
    provider_batch = submitted(client, env, "anthropic", batch.id)
    # When the batch is cancelled
    assert client.batches.cancel(batch.id).status == "cancelling"
    # Then the provider's batch is cancelled at once, and the batch ends cancelled
    assert provider_batch.cancelled
    env.fakes.end_batches(ran=1)
    done = wait_for(client, batch.id, timeout=60)
    assert done.status == "cancelled", done
    assert len(file_lines(client, done.output_file_id)) == 1
    errors = file_lines(client, done.error_file_id)
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}


def test_a_batch_cancelled_before_the_schedule_submits_it_never_reaches_the_provider(
    env: Env,
    aws_endpoint: str,
    api_key: str,
) -> None:
    # Given the schedule at its real rate (it does not run during the test)
    with native_stack(env, aws_endpoint, time_scale=1.0) as url:
        client = sdk(url, api_key)
        batch = submit(client, lines("claude-native", 2))
        # When the batch is cancelled before the schedule submitted it
        assert client.batches.cancel(batch.id).status == "cancelling"
        # And the schedule then runs (the batch function, for a scheduled event)
        swept = handler({"detail-type": "Scheduled Event", "source": "aws.scheduler"}, None)
        # Then the batch is cancelled, every request batch_cancelled, the provider
        # never asked
        assert swept["swept"]["native_polled"] == 1
        done = client.batches.retrieve(batch.id)
        assert done.status == "cancelled" and done.output_file_id is None
        errors = file_lines(client, done.error_file_id)
        assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
            ("req-0", "batch_cancelled"),
            ("req-1", "batch_cancelled"),
        ]
        assert env.fakes.provider_batches("anthropic") == []
        assert batch_rows(env, batch.id) == []


def test_a_model_without_the_opt_in_stays_queued(stack: str, env: Env, api_key: str) -> None:
    client = sdk(stack, api_key)
    batch = submit(client, lines("gpt-test", 3))
    done = wait_for(client, batch.id, timeout=60)
    assert done.status == "completed"
    assert env.fakes.provider_batches("openai") == []
    calls = [r for r in env.fakes.requests("openai") if r.path == "/v1/chat/completions"]
    assert len(calls) == 3
    # And a batch mixing a native model with another runs queued too
    mixed = lines("gpt-native", 1).replace(b"req-0", b"mix-0") + lines("gpt-test", 1)
    assert submit(client, mixed).status == "validating"
    assert env.fakes.provider_batches("openai") == []


def test_the_budget_is_checked_before_the_provider_sees_a_batch(
    env: Env,
    aws_endpoint: str,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a daily budget smaller than any batch's estimate
    monkeypatch.setenv("SPINE_LIMITS__DAILY_BUDGET_USD", "0.0000001")
    with native_stack(env, aws_endpoint) as url:
        client = sdk(url, api_key)
        # When a native batch is created
        batch = submit(client, lines("gpt-native", 50))
        done = wait_for(client, batch.id, timeout=60)
        # Then it failed with the budget's refusal; the provider never saw it
        assert done.status == "failed"
        assert done.errors is not None and done.errors.data
        assert done.errors.data[0].code == "insufficient_quota"
        assert "budget" in (done.errors.data[0].message or "")
        assert env.fakes.provider_batches("openai") == []
