"""The Anthropic adapter drives the real `anthropic` SDK against the wire fake."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from spine.providers import get_provider
from spine.registry.schema import ProviderKind
from tests.fakes import Events, FakeProviders, Reply
from tests.fakes import anthropic_api as wire
from tests.providers.helpers import chat, make_target, user

ANTHROPIC = ProviderKind.ANTHROPIC
PNG = base64.b64encode(b"\x89PNG fake image").decode()


async def test_system_apart_turns_merged_and_max_tokens_defaulted(
    fake_providers: FakeProviders,
) -> None:
    request = chat(
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use metric units."},
        user("Hi"),
        user("How tall is the Eiffel tower?"),
        stop="END",
        user="end-user-1",
    )
    target = make_target(ANTHROPIC, fake_providers, max_output_tokens=2048)
    answer = await get_provider(ANTHROPIC).chat(target, request)

    sent = fake_providers.last("anthropic")
    assert sent.path == "/v1/messages"
    assert "upstream-key" in (
        sent.headers.get("x-api-key", "") + sent.headers.get("authorization", "")
    )
    assert sent.headers["anthropic-version"]
    body = sent.json
    assert body["model"] == "claude-haiku-4-5"
    assert body["system"] == "Be brief.\n\nUse metric units."
    assert body["max_tokens"] == 2048  # the model's max_output_tokens
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "end-user-1"}
    # Two user messages in a row become one user turn: the API wants alternation.
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hi"},
                {"type": "text", "text": "How tall is the Eiffel tower?"},
            ],
        }
    ]
    assert answer.choices[0].message.content == "echo: Hi How tall is the Eiffel tower?"


async def test_request_limit_wins_and_images_are_sent(fake_providers: FakeProviders) -> None:
    request = chat(
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        },
        max_completion_tokens=100,
    )
    await get_provider(ANTHROPIC).chat(make_target(ANTHROPIC, fake_providers), request)
    body = fake_providers.last("anthropic").json
    assert body["max_tokens"] == 100
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


async def test_tools_tool_history_and_tool_choice(fake_providers: FakeProviders) -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = chat(
        user("Weather in Paris?"),
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"},
        tools=[{"type": "function", "function": {"name": "weather", "parameters": params}}],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    await get_provider(ANTHROPIC).chat(make_target(ANTHROPIC, fake_providers), request)

    body = fake_providers.last("anthropic").json
    assert body["tools"] == [{"name": "weather", "description": "", "input_schema": params}]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"}],
    }


async def test_tool_use_answer_and_cache_usage(fake_providers: FakeProviders) -> None:
    # Given an answer that read 300 prompt tokens from the cache and wrote 50 to it
    content = [
        {"type": "text", "text": "Let me look."},
        wire.tool_use("toolu_9", "weather", {"city": "Oslo"}),
    ]
    usage = wire.usage(100, 20, cache_read=300, cache_creation=50)
    fake_providers.script(
        "anthropic", Reply(wire.message(content=content, stop_reason="tool_use", usage_body=usage))
    )
    # When
    answer = await get_provider(ANTHROPIC).chat(make_target(ANTHROPIC, fake_providers), chat())
    # Then
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look."
    calls = choice.message.tool_calls or []
    assert calls[0].id == "toolu_9"
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}
    # input_tokens excludes cache reads and writes; OpenAI's prompt_tokens includes them.
    assert answer.usage.prompt_tokens == 450
    assert answer.usage.cached_tokens == 300
    assert answer.usage.completion_tokens == 20
    assert answer.usage.total_tokens == 470


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
    ],
)
async def test_stop_reasons(fake_providers: FakeProviders, stop_reason: str, expected: str) -> None:
    fake_providers.script("anthropic", Reply(wire.message("x", stop_reason=stop_reason)))
    answer = await get_provider(ANTHROPIC).chat(make_target(ANTHROPIC, fake_providers), chat())
    assert answer.choices[0].finish_reason == expected


async def test_sampling_params_are_not_offered() -> None:
    # API version 2026-10-21 rejects them; the chat service refuses them up front.
    request = chat(temperature=0.5, top_p=0.9, seed=1, max_tokens=10)
    assert get_provider(ANTHROPIC).unsupported_params(request) == ["seed", "temperature", "top_p"]


async def test_stream_text(fake_providers: FakeProviders) -> None:
    chunks = [
        c
        async for c in get_provider(ANTHROPIC).chat_stream(
            make_target(ANTHROPIC, fake_providers), chat(user("a b"))
        )
    ]
    assert fake_providers.last("anthropic").json["stream"] is True
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: a b"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["prompt_tokens"] == 2
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_stream_tool_calls_and_cache_usage(fake_providers: FakeProviders) -> None:
    answer = wire.message(
        content=[wire.tool_use("toolu_7", "weather", {"city": "Rome"})],
        stop_reason="tool_use",
        usage_body=wire.usage(10, 7, cache_read=90, cache_creation=0),
    )
    fake_providers.script("anthropic", Events(wire.stream_events(answer), done_marker=False))
    chunks = [
        c
        async for c in get_provider(ANTHROPIC).chat_stream(
            make_target(ANTHROPIC, fake_providers), chat()
        )
    ]
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0]["id"] == "toolu_7"
    assert calls[0]["function"]["name"] == "weather"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Rome"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 100
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 90


def test_missing_sdk_names_the_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['anthropic'] = None\n"
        "from spine.providers import get_provider\n"
        "try:\n"
        "    get_provider('anthropic')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc.status_code, exc.code, exc.message)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.startswith("ProviderNotInstalledError 503 provider_not_installed")
    assert "pip install 'spine[anthropic]'" in result.stdout
