"""Anthropic's Messages API through `spine local`, driven by the official `anthropic`
client: Claude models natively (every field and block relayed), other models
translated both ways; streams with Anthropic's event sequence; count_tokens; auth by
x-api-key or bearer; errors in Anthropic's shape, with nothing billed for them.

The stream checks replay the shapes that break Anthropic clients behind other
gateways: deltas for a block never started ("Content block not found"), thinking
deltas inside a text block, usage missing from message_start or message_delta.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes import anthropic_api, openai_api
from tests.fakes.script import Events, Fail, Reply
from tests.integration.conftest import Env
from tests.integration.emulator import emulator_url, rows_when_written

__all__ = ["emulator_url"]

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def claude(emulator_url: str, api_key: str) -> Iterator[anthropic.Anthropic]:
    """The official client as Claude Code configures it: x-api-key, the gateway's URL."""
    with anthropic.Anthropic(
        base_url=emulator_url, api_key=api_key, max_retries=0, timeout=30
    ) as sdk:
        yield sdk


def sse_events(emulator_url: str, api_key: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(event name, data) of each event of a streamed /v1/messages answer, raw."""
    events: list[tuple[str, Any]] = []
    with httpx.stream(
        "POST",
        f"{emulator_url}/v1/messages",
        json={**body, "stream": True},
        headers={"x-api-key": api_key},
        timeout=30,
    ) as response:
        assert response.status_code == 200, response.read()
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name or "", json.loads(line.removeprefix("data: "))))
                name = None
    return events


def assert_well_formed(events: list[tuple[str, Any]]) -> None:
    """Anthropic's stream grammar, as its SDKs and Claude Code rely on it."""
    names = [name for name, _ in events]
    assert all(name == data["type"] for name, data in events)
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    start_usage = events[0][1]["message"]["usage"]
    assert isinstance(start_usage["input_tokens"], int)
    assert isinstance(start_usage["output_tokens"], int)
    assert isinstance(events[-2][1]["usage"]["output_tokens"], int)
    open_block: tuple[int, str] | None = None
    seen: list[int] = []
    allowed = {
        "text": {"text_delta", "citations_delta"},
        "thinking": {"thinking_delta", "signature_delta"},
        "tool_use": {"input_json_delta"},
    }
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_block is None, "a block started before the last one stopped"
            open_block = (data["index"], data["content_block"]["type"])
            assert data["index"] == len(seen)
            seen.append(data["index"])
        elif name == "content_block_delta":
            assert open_block is not None and data["index"] == open_block[0]
            assert data["delta"]["type"] in allowed[open_block[1]], (open_block, data)
        elif name == "content_block_stop":
            assert open_block is not None and data["index"] == open_block[0]
            open_block = None
        else:
            assert name == "ping", name
    assert open_block is None


def _content(message: anthropic.types.Message) -> list[dict[str, Any]]:
    return [block.to_dict() for block in message.content]


# --- Claude models: natively ------------------------------------------------------------


def test_a_claude_model_receives_the_request_as_sent_and_its_answer_comes_back_whole(
    claude: anthropic.Anthropic, env: Env
) -> None:
    message = claude.messages.create(
        model="claude-test",
        max_tokens=200,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ],
        extra_body={"context_management": {"edits": []}},
        extra_headers={"anthropic-beta": "context-management-2025-06-27"},
    )
    assert message.model == "claude-test"
    assert _content(message) == [{"type": "text", "text": "echo: hello there"}]
    assert message.usage.input_tokens == 4 and message.usage.output_tokens == 3
    sent = env.fakes.last("anthropic")
    assert sent.path == "/v1/messages"
    assert sent.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert sent.json == {
        "model": "claude-haiku-4-5",
        "max_tokens": 200,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
        "context_management": {"edits": []},
    }
    [row] = rows_when_written(env)
    assert (row["endpoint"], row["model"], row["prompt_tokens"], row["completion_tokens"]) == (
        "messages",
        "claude-test",
        4,
        3,
    )
    assert row["status"] == "ok" and row["cost_usd"] > 0


def test_a_claude_stream_is_relayed_event_for_event_and_assembles_to_the_json_answer(
    claude: anthropic.Anthropic, emulator_url: str, api_key: str, env: Env
) -> None:
    answer = anthropic_api.message(
        content=[
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig_abc"},
            {"type": "text", "text": "Let me look."},
            anthropic_api.tool_use("toolu_1", "get_weather", {"city": "Oslo"}),
        ],
        stop_reason="tool_use",
        usage_body=anthropic_api.usage(12, 20, cache_read=5),
    )
    env.fakes.script("anthropic", Reply(answer))
    env.fakes.script("anthropic", Events(anthropic_api.stream_events(answer), done_marker=False))
    env.fakes.script("anthropic", Events(anthropic_api.stream_events(answer), done_marker=False))
    request = {
        "model": "claude-test",
        "max_tokens": 300,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
    }
    whole = claude.messages.create(**request)
    with claude.messages.stream(**request) as stream:
        streamed = stream.get_final_message()
    assert _content(streamed) == _content(whole)
    assert _content(whole)[0] == {
        "type": "thinking",
        "thinking": "The user wants weather.",
        "signature": "sig_abc",
    }
    assert streamed.stop_reason == whole.stop_reason == "tool_use"
    assert streamed.usage.output_tokens == whole.usage.output_tokens == 20
    assert streamed.usage.cache_read_input_tokens == 5
    assert streamed.model == "claude-test"
    events = sse_events(emulator_url, api_key, request)
    assert_well_formed(events)
    rows = rows_when_written(env, 3)
    assert [(r["endpoint"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        ("messages", 17, 20)
    ] * 3


# --- other models: translated -----------------------------------------------------------


def test_a_tool_round_trip_with_an_openai_model_is_translated_both_ways(
    claude: anthropic.Anthropic, env: Env
) -> None:
    env.fakes.script(
        "openai",
        Reply(
            openai_api.chat_completion(
                None,
                tool_calls=[openai_api.tool_call("call_9", "get_weather", '{"city": "Oslo"}')],
                finish_reason="tool_calls",
                usage_body=openai_api.usage(30, 7),
            )
        ),
    )
    message = claude.messages.create(
        model="gpt-test",
        max_tokens=100,
        system="You check the weather.",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        metadata={"user_id": "user-7"},
        messages=[
            {"role": "user", "content": "Weather in Bergen?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Claude's own.", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                     "input": {"city": "Bergen"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Rain, 9 C"},
                    {"type": "text", "text": "And in Oslo?"},
                ],
            },
        ],
    )  # fmt: skip
    assert message.model == "gpt-test"
    assert message.stop_reason == "tool_use"
    assert _content(message) == [
        {"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": "Oslo"}}
    ]
    assert message.usage.input_tokens == 30 and message.usage.output_tokens == 7
    sent = env.fakes.last("openai").json
    assert sent["messages"] == [
        {"role": "system", "content": "You check the weather."},
        {"role": "user", "content": "Weather in Bergen?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Rain, 9 C"},
        {"role": "user", "content": [{"type": "text", "text": "And in Oslo?"}]},
    ]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert sent["stop"] == ["END"] and sent["user"] == "user-7"
    assert sent["max_tokens"] == 100
    [row] = rows_when_written(env)
    assert (row["endpoint"], row["prompt_tokens"], row["completion_tokens"]) == (
        "messages",
        30,
        7,
    )


def _reasoning_stream() -> list[Any]:
    model = "gpt-4o-mini"
    return [
        openai_api.chunk(model, {"role": "assistant", "content": ""}),
        openai_api.chunk(model, {"reasoning_content": "Think"}),
        openai_api.chunk(model, {"reasoning_content": "ing."}),
        openai_api.chunk(model, {"content": "It is"}),
        openai_api.chunk(model, {"content": " sunny."}),
        openai_api.chunk(
            model,
            {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": ""}}]},
        ),
        openai_api.chunk(
            model, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}
        ),
        openai_api.chunk(
            model, {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}
        ),
        openai_api.chunk(model, {}, "tool_calls"),
        openai_api.usage_chunk(model, openai_api.usage(21, 9, cached=4, reasoning=2)),
    ]  # fmt: skip


def _reasoning_answer() -> dict[str, Any]:
    answer = openai_api.chat_completion(
        "It is sunny.",
        tool_calls=[openai_api.tool_call("call_1", "get_weather", '{"city": "Oslo"}')],
        finish_reason="tool_calls",
        usage_body=openai_api.usage(21, 9, cached=4, reasoning=2),
    )
    answer["choices"][0]["message"]["reasoning_content"] = "Thinking."
    return answer


def test_a_translated_stream_keeps_each_delta_in_a_block_of_its_type(
    claude: anthropic.Anthropic, emulator_url: str, api_key: str, env: Env
) -> None:
    env.fakes.script("openai", Events(_reasoning_stream()))
    request = {
        "model": "gpt-test",
        "max_tokens": 100,
        "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "Weather?"}],
    }
    events = sse_events(emulator_url, api_key, request)
    assert_well_formed(events)
    starts = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    assert events[0][1]["message"]["model"] == "gpt-test"
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"] == {
        "input_tokens": 17,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
        "output_tokens": 9,
    }
    # The client assembles the same message as the JSON answer to the same request.
    env.fakes.script("openai", Events(_reasoning_stream()))
    env.fakes.script("openai", Reply(_reasoning_answer()))
    with claude.messages.stream(**request) as stream:
        streamed = stream.get_final_message()
    whole = claude.messages.create(**request)
    assert _content(streamed) == _content(whole)
    assert _content(whole) == [
        {"type": "thinking", "thinking": "Thinking.", "signature": ""},
        {"type": "text", "text": "It is sunny."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    assert streamed.usage.to_dict() == whole.usage.to_dict()
    rows = rows_when_written(env, 3)
    assert {(r["endpoint"], r["prompt_tokens"], r["completion_tokens"]) for r in rows} == {
        ("messages", 21, 9)
    }


def test_a_gemini_model_answers_through_the_messages_api(
    claude: anthropic.Anthropic, env: Env
) -> None:
    message = claude.messages.create(
        model="gemini-test",
        max_tokens=50,
        messages=[{"role": "user", "content": "three little words"}],
    )
    assert message.model == "gemini-test"
    assert message.content[0].type == "text" and "three little words" in message.content[0].text
    assert env.fakes.requests("anthropic") == []


def test_fields_only_claude_takes_are_dropped_for_other_models_and_named(
    emulator_url: str, api_key: str, env: Env
) -> None:
    response = httpx.post(
        f"{emulator_url}/v1/messages",
        headers={"x-api-key": api_key},
        json={
            "model": "gpt-test",
            "max_tokens": 20,
            "context_management": {"edits": []},
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert "context_management" in response.headers["x-spine-dropped-params"].split(",")
    assert "context_management" not in env.fakes.last("openai").json


# --- count_tokens -----------------------------------------------------------------------


def test_count_tokens_is_anthropics_count_for_claude_and_says_when_it_is_an_estimate(
    claude: anthropic.Anthropic, emulator_url: str, api_key: str, env: Env
) -> None:
    request = {
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "count these five words"}],
    }
    counted = claude.messages.count_tokens(model="claude-test", **request)
    assert counted.input_tokens == 6  # the fake counts words
    assert env.fakes.last("anthropic").path == "/v1/messages/count_tokens"
    assert env.fakes.last("anthropic").json["model"] == "claude-haiku-4-5"
    raw = httpx.post(
        f"{emulator_url}/v1/messages/count_tokens",
        headers={"x-api-key": api_key},
        json={"model": "gemini-test", **request},
        timeout=30,
    )
    assert raw.status_code == 200
    assert raw.headers["x-spine-token-count"] == "estimate"
    assert raw.json()["input_tokens"] > 0
    gpt = claude.messages.count_tokens(model="gpt-test", **request)
    assert 8 <= gpt.input_tokens <= 20  # o200k: the words, the roles and chat framing
    assert env.usage_rows() == []  # counting is free, as Anthropic's is


# --- auth and errors --------------------------------------------------------------------


def test_x_api_key_and_bearer_both_authenticate_and_a_missing_key_is_anthropics_401(
    emulator_url: str, api_key: str
) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with anthropic.Anthropic(
        base_url=emulator_url, auth_token=api_key, api_key=None, max_retries=0
    ) as bearer:
        assert bearer.messages.create(model="claude-test", max_tokens=10, messages=messages).id
    with (
        anthropic.Anthropic(base_url=emulator_url, api_key="sk-spine-wrong", max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError) as refused,
    ):
        bad.messages.create(model="claude-test", max_tokens=10, messages=messages)
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["request_id"] == refused.value.response.headers["x-request-id"]


def test_bad_input_is_anthropics_400_naming_the_field_and_nothing_is_billed(
    claude: anthropic.Anthropic, env: Env
) -> None:
    with pytest.raises(anthropic.BadRequestError) as missing:
        claude.messages.create(
            model="claude-test",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=None,  # type: ignore[arg-type]
        )
    assert missing.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in missing.value.message
    with pytest.raises(anthropic.BadRequestError) as document:
        claude.messages.create(
            model="gpt-test",
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Summarize:"},
                        {"type": "document",
                         "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
                    ],
                }
            ],
        )  # fmt: skip
    assert "messages[0].content[1]" in document.value.message
    assert "document" in document.value.message
    with pytest.raises(anthropic.NotFoundError) as unknown:
        claude.messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as server_tool:
        claude.messages.create(
            model="gpt-test",
            max_tokens=10,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
            messages=[{"role": "user", "content": "news?"}],
        )
    assert "tools[0].type" in server_tool.value.message
    assert env.fakes.requests("openai") == [] and env.fakes.requests("anthropic") == []
    assert env.usage_rows() == []


def test_upstream_errors_keep_their_meaning_in_anthropics_shape(
    claude: anthropic.Anthropic, env: Env
) -> None:
    env.fakes.script("anthropic", Fail(429, retry_after=3))
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(
            model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    env.fakes.script("openai", Fail(400, kind="context_length"))
    with pytest.raises(anthropic.BadRequestError) as too_long:
        claude.messages.create(
            model="gpt-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    # Claude Code compacts the conversation on this message, whichever model said it.
    assert too_long.value.body["error"]["message"].startswith("prompt is too long")  # type: ignore[index]


def test_a_stream_that_fails_midway_ends_with_anthropics_error_event_and_is_billed(
    emulator_url: str, api_key: str, env: Env
) -> None:
    answer = anthropic_api.message("one two three four five six")
    events = anthropic_api.stream_events(answer)
    env.fakes.script("anthropic", Events(events[:5], done_marker=False))  # no message_delta
    received = sse_events(
        emulator_url,
        api_key,
        {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "go"}]},
    )
    assert received[0][0] == "message_start"
    name, error = received[-1]
    assert name == "error" and error["type"] == "error"
    assert error["error"]["type"] == "api_error" and error["error"]["message"]
    [row] = rows_when_written(env)
    assert row["status"] == "error" and row["endpoint"] == "messages"
    assert row["completion_tokens"] > 0  # what was streamed is estimated and billed
