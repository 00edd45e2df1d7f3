"""The chat function through its real Lambda handler, real API Gateway events, the
real provider SDKs against wire fakes, and a real Postgres."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.fakes import Fail, Reply, gemini_api, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway

HELLO = [{"role": "user", "content": "Say hello"}]


def chat(gateway: Gateway, key: str | None, body: object, **kw: object) -> object:
    return gateway.request("POST", "/v1/chat/completions", json_body=body, key=key, **kw)  # type: ignore[arg-type]


# --- answers and usage ------------------------------------------------------------------


def test_openai_answer_is_normalized_and_one_usage_row_written(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # Given an upstream answer with cached prompt tokens
    env.fakes.script(
        "openai",
        Reply(
            openai_api.chat_completion(
                "Hi there", usage_body=openai_api.usage(1000, 20, cached=600)
            )
        ),
    )
    # When
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "gpt-test", "messages": HELLO},
        key=api_key,
    )
    # Then the client gets OpenAI's shape with Spine's model id
    assert result.status == 200, result.body
    body = result.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-test"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hi there",
        "refusal": None,
        "tool_calls": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 1000
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 600
    assert result.headers["x-spine-provider"] == "openai"
    # And the upstream got the provider's model name, the model default and the key
    sent = env.fakes.last("openai")
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["temperature"] == 0.5
    assert sent.headers["authorization"] == "Bearer sk-upstream-openai"
    # And exactly one usage row, costed with the cached price for cached tokens
    [row] = env.usage_rows()
    request_id = result.event["requestContext"]["requestId"]
    assert row["request_id"] == request_id == result.headers["x-request-id"]
    assert (row["model"], row["resolved_model"], row["provider"]) == (
        "gpt-test",
        "gpt-test",
        "openai",
    )
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (1000, 20, 600)
    expected = (
        Decimal(400) * Decimal("0.15") + 600 * Decimal("0.075") + 20 * Decimal("0.60")
    ) / 10**6
    assert row["cost_usd"] == expected
    assert result.headers["x-spine-cost-usd"] == f"{expected:.9f}"
    assert row["status"] == "ok" and row["http_status"] == 200
    assert row["api_key_id"] is not None and row["latency_ms"] is not None


def test_gemini_cached_tokens_are_not_double_counted(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # Given Gemini reports 1000 prompt tokens of which 800 came from its cache
    env.fakes.script(
        "gemini",
        Reply(gemini_api.response("Bonjour", usage_body=gemini_api.usage(1000, 10, cached=800))),
    )
    # When
    result = chat(gateway, api_key, {"model": "gemini-test", "messages": HELLO})
    # Then
    assert result.status == 200, result.body  # type: ignore[attr-defined]
    usage = result.json()["usage"]  # type: ignore[attr-defined]
    assert usage["prompt_tokens"] == 1000
    assert usage["prompt_tokens_details"]["cached_tokens"] == 800
    [row] = env.usage_rows()
    expected = (200 * Decimal("0.30") + 800 * Decimal("0.03") + 10 * Decimal("2.50")) / 10**6
    assert row["cost_usd"] == expected


def test_anthropic_answer_and_system_prompt(gateway: Gateway, env: Env, api_key: str) -> None:
    # When
    result = chat(
        gateway,
        api_key,
        {
            "model": "claude-test",
            "messages": [{"role": "system", "content": "Be kind."}, *HELLO],
            "max_tokens": 100,
        },
    )
    # Then
    assert result.status == 200, result.body  # type: ignore[attr-defined]
    assert result.json()["choices"][0]["message"]["content"]  # type: ignore[attr-defined]
    sent = env.fakes.last("anthropic").json
    assert sent["system"] in ("Be kind.", [{"type": "text", "text": "Be kind."}])
    assert sent["max_tokens"] == 100
    assert [row["provider"] for row in env.usage_rows()] == ["anthropic"]


def test_profile_layers_parameters_and_system_prompt(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # When the client names a top-level alias that points at a profile
    result = chat(gateway, api_key, {"model": "default", "messages": HELLO, "temperature": 0.9})
    # Then the request's temperature wins, the profile's max_tokens and system prompt apply
    assert result.status == 200, result.body  # type: ignore[attr-defined]
    sent = env.fakes.last("openai").json
    assert sent["temperature"] == 0.9
    assert sent["max_tokens"] == 50
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    [row] = env.usage_rows()
    assert (row["model"], row["resolved_model"]) == ("default", "gpt-test")


def test_text_completion(gateway: Gateway, env: Env, api_key: str) -> None:
    result = gateway.request(
        "POST",
        "/v1/completions",
        json_body={"model": "gpt-test", "prompt": "Once upon a time", "max_tokens": 5},
        key=api_key,
    )
    assert result.status == 200, result.body
    body = result.json()
    assert body["object"] == "text_completion"
    assert isinstance(body["choices"][0]["text"], str)
    [row] = env.usage_rows()
    assert row["endpoint"] == "completions"


# --- authentication ---------------------------------------------------------------------


def test_missing_key_is_401_in_openai_shape(gateway: Gateway, env: Env) -> None:
    result = chat(gateway, None, {"model": "gpt-test", "messages": HELLO})
    assert result.status == 401  # type: ignore[attr-defined]
    assert result.error["type"] == "authentication_error"  # type: ignore[attr-defined]
    assert env.fakes.requests("openai") == []


def test_wrong_key_is_401(gateway: Gateway, env: Env, api_key: str) -> None:
    result = chat(gateway, api_key[:-4] + "AAAA", {"model": "gpt-test", "messages": HELLO})
    assert result.status == 401  # type: ignore[attr-defined]
    assert result.error["code"] == "invalid_api_key"  # type: ignore[attr-defined]
    assert api_key[-8:] not in result.error["message"]  # type: ignore[attr-defined]


def test_revoked_key_fails_on_its_next_request(gateway: Gateway, env: Env, api_key: str) -> None:
    assert chat(gateway, api_key, {"model": "gpt-test", "messages": HELLO}).status == 200  # type: ignore[attr-defined]
    env.revoke(api_key)
    result = chat(gateway, api_key, {"model": "gpt-test", "messages": HELLO})
    assert result.status == 401  # type: ignore[attr-defined]


def test_unauthenticated_malformed_body_gets_401_not_a_parse_error(gateway: Gateway) -> None:
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        body=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert result.status == 401


def test_sql_injection_in_the_key_is_just_a_wrong_key(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    result = chat(gateway, "sk-spine-' OR '1'='1", {"model": "gpt-test", "messages": HELLO})
    assert result.status == 401  # type: ignore[attr-defined]
    assert env.usage_rows() == []


# --- bad input: a 4xx naming the field, nothing sent upstream --------------------------


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "gpt-test", "messages": []}, 400, "messages", "invalid_value"),
        ({"model": "gpt-test"}, 400, "messages", "missing_required_parameter"),
        (
            {"model": "gpt-test", "messages": HELLO, "temperature": "hot"},
            400,
            "temperature",
            "invalid_value",
        ),
        (
            {"model": "gpt-test", "messages": HELLO, "temperature": 7},
            400,
            "temperature",
            "invalid_value",
        ),
        (
            {"model": "gpt-test", "messages": [{"role": "wizard", "content": "x"}]},
            400,
            "messages[0].role",
            "invalid_value",
        ),
        ({"model": "no-such-model", "messages": HELLO}, 404, "model", "model_not_found"),
        (
            {"model": "gpt-test", "messages": HELLO, "max_tokens": 5000},
            400,
            "max_tokens",
            "invalid_value",
        ),
        (
            {"model": "gpt-test", "messages": HELLO, "max_tokens": -1},
            400,
            "max_tokens",
            "invalid_value",
        ),
        (
            {
                "model": "gemini-test",
                "messages": HELLO,
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            400,
            "tools",
            "unsupported_capability",
        ),
        (
            # 9,000 words are 9,000 tokens to GPT's tokenizer: past the 8,000 window.
            {"model": "gpt-test", "messages": [{"role": "user", "content": "word " * 9000}]},
            400,
            "messages",
            "context_length_exceeded",
        ),
        (
            # A streamed request is checked the same way, before any event is sent.
            {"model": "gpt-test", "messages": HELLO, "stream": True, "stream_options": {"x": 1}},
            400,
            "stream_options.x",
            "unknown_parameter",
        ),
    ],
)
def test_bad_input_names_the_field_and_reaches_no_provider(
    gateway: Gateway,
    env: Env,
    api_key: str,
    body: dict[str, object],
    status: int,
    param: str,
    code: str,
) -> None:
    result = chat(gateway, api_key, body)
    assert result.status == status, result.body  # type: ignore[attr-defined]
    error = result.error  # type: ignore[attr-defined]
    assert (error["param"], error["code"]) == (param, code), error
    assert env.fakes.requests("openai") == [] and env.fakes.requests("gemini") == []
    assert env.usage_rows() == []


def test_malformed_json(gateway: Gateway, env: Env, api_key: str) -> None:
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        body=b'{"model": "gpt-test",',
        key=api_key,
        headers={"Content-Type": "application/json"},
    )
    assert result.status == 400
    assert result.error["code"] == "invalid_json"
    assert "not valid JSON" in result.error["message"]


def test_oversized_body_is_413(gateway: Gateway, env: Env, api_key: str) -> None:
    big = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 70000}]}
    result = chat(gateway, api_key, big)
    assert result.status == 413  # type: ignore[attr-defined]
    assert result.error["code"] == "request_too_large"  # type: ignore[attr-defined]
    assert env.fakes.requests("openai") == []


def test_missing_provider_key_is_a_clear_server_error(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    result = chat(gateway, api_key, {"model": "unconfigured", "messages": HELLO})
    assert result.status == 500  # type: ignore[attr-defined]
    assert "SPINE_TEST_MISSING_KEY" in result.error["message"]  # type: ignore[attr-defined]
    assert result.error["code"] == "provider_not_configured"  # type: ignore[attr-defined]
    # A configuration error no retry can fix: OpenAI's SDKs are told not to retry it
    assert result.headers["x-should-retry"] == "false"  # type: ignore[attr-defined]
    assert env.fakes.requests("openai") == []


def test_missing_keys_along_a_fallback_chain_name_every_model(env: Env, api_key: str) -> None:
    # Given a model without its key whose fallback has no key either
    backup = (
        "  - id: unconfigured-backup\n"
        "    provider: anthropic\n"
        "    model: claude-haiku-4-5\n"
        "    api_key: {env: SPINE_TEST_MISSING_BACKUP_KEY}\n"
        "    context_window: 8000\n"
    )
    text = env.models_path.read_text().replace(
        "    api_key: {env: SPINE_TEST_MISSING_KEY}\n",
        "    api_key: {env: SPINE_TEST_MISSING_KEY}\n    fallbacks: [unconfigured-backup]\n",
    )
    env.write_models(text.replace("profiles:\n", backup + "profiles:\n"))
    gateway = Gateway()
    try:
        result = chat(gateway, api_key, {"model": "unconfigured", "messages": HELLO})
    finally:
        gateway.close()
    assert result.status == 500, result.body
    message = result.error["message"]
    assert "'unconfigured'" in message
    assert "SPINE_TEST_MISSING_KEY" in message and "SPINE_TEST_MISSING_BACKUP_KEY" in message
    assert result.headers["x-should-retry"] == "false"


# --- provider errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "failure", "status", "code"),
    [
        ("openai", "gpt-test", Fail(429, retry_after=7), 429, "rate_limit_exceeded"),
        ("openai", "gpt-test", Fail(500), 502, "upstream_error"),
        ("openai", "gpt-test", Fail(400, kind="context_length"), 400, "context_length_exceeded"),
        ("openai", "gpt-test", Fail(401), 502, "upstream_auth_failed"),
        ("gemini", "gemini-test", Fail(429, retry_after=3), 429, "rate_limit_exceeded"),
        ("gemini", "gemini-test", Fail(503), 502, "upstream_error"),
        ("anthropic", "claude-test", Fail(529), 502, "upstream_error"),
    ],
)
def test_provider_errors_map_to_openai_errors_and_are_recorded(
    gateway: Gateway,
    env: Env,
    api_key: str,
    provider: str,
    model: str,
    failure: Fail,
    status: int,
    code: str,
) -> None:
    env.fakes.script(provider, failure)
    result = chat(gateway, api_key, {"model": model, "messages": HELLO})
    assert result.status == status, result.body  # type: ignore[attr-defined]
    assert result.error["code"] == code  # type: ignore[attr-defined]
    if status == 429:
        assert int(result.headers["retry-after"]) == int(failure.retry_after or 0)  # type: ignore[attr-defined]
    [row] = env.usage_rows()
    assert (row["status"], row["http_status"], row["error_code"]) == ("error", status, code)
    assert row["cost_usd"] == 0


def test_database_down_is_503(gateway: Gateway, env: Env, api_key: str) -> None:
    from spine.storage import db

    db.configure("postgresql://spine@127.0.0.1:9/spine", connect_timeout=1)
    result = chat(gateway, api_key, {"model": "gpt-test", "messages": HELLO})
    assert result.status == 503  # type: ignore[attr-defined]
    assert result.error["message"].startswith("database unavailable")  # type: ignore[attr-defined]
    assert env.fakes.requests("openai") == []
