"""The Gemini adapter drives the real `google-genai` SDK against the wire fake."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from spine.errors import InvalidRequestError
from spine.providers import get_provider
from spine.registry.schema import ProviderKind
from tests.fakes import Events, FakeProviders, Reply
from tests.fakes import gemini_api as wire
from tests.providers.helpers import chat, make_target, user

GEMINI = ProviderKind.GEMINI
PNG = base64.b64encode(b"\x89PNG fake image").decode()


def proto_field(message: dict[str, Any], camel: str) -> Any:
    """A field of a Google JSON message. Google's JSON parsers take the camelCase and
    the proto (snake_case) spelling alike, and google-genai sends some in each."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return message[camel] if camel in message else message[snake]


async def test_roles_and_system_instruction(fake_providers: FakeProviders) -> None:
    request = chat(
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer in French."},
        user("Hi"),
        {"role": "assistant", "content": "Bonjour"},
        user("Capital of France?"),
    )
    answer = await get_provider(GEMINI).chat(make_target(GEMINI, fake_providers), request)

    sent = fake_providers.last("gemini")
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == "upstream-key"
    body = sent.json
    assert body["systemInstruction"]["parts"] == [
        {"text": "You are terse."},
        {"text": "Answer in French."},
    ]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == [{"text": "Bonjour"}]
    assert answer.choices[0].message.content == "echo: Capital of France?"
    assert answer.model == "gemini-2.5-flash"


async def test_generation_config(fake_providers: FakeProviders) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    request = chat(
        temperature=0.3,
        top_p=0.9,
        max_tokens=64,
        stop=["END", "STOP"],
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    await get_provider(GEMINI).chat(make_target(GEMINI, fake_providers), request)

    config = fake_providers.last("gemini").json["generationConfig"]
    assert config == {
        "temperature": 0.3,
        "topP": 0.9,
        "maxOutputTokens": 64,
        "stopSequences": ["END", "STOP"],
        "seed": 42,
        "presencePenalty": 0.5,
        "frequencyPenalty": 0.25,
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }


async def test_images_and_text_parts(fake_providers: FakeProviders) -> None:
    request = chat(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    )
    await get_provider(GEMINI).chat(make_target(GEMINI, fake_providers), request)

    parts = fake_providers.last("gemini").json["contents"][0]["parts"]
    assert parts[0] == {"text": "What is this?"}
    inline = proto_field(parts[1], "inlineData")
    assert (proto_field(inline, "mimeType"), inline["data"]) == ("image/png", PNG)
    file_data = proto_field(parts[2], "fileData")
    assert proto_field(file_data, "fileUri") == "https://example.com/cat.jpg"
    assert proto_field(file_data, "mimeType") == "image/jpeg"


async def test_tools_and_tool_history_go_upstream(fake_providers: FakeProviders) -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = chat(
        user("Weather in Paris and Rome?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_gm_made_up",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_gm_made_up", "content": "sunny"},
        tools=[
            {
                "type": "function",
                "function": {"name": "weather", "description": "Weather", "parameters": params},
            }
        ],
        tool_choice={"type": "function", "function": {"name": "weather"}},
    )
    await get_provider(GEMINI).chat(make_target(GEMINI, fake_providers), request)

    body = fake_providers.last("gemini").json
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert (declaration["name"], declaration["description"]) == ("weather", "Weather")
    assert proto_field(declaration, "parametersJsonSchema") == params
    assert body["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY",
        "allowedFunctionNames": ["weather"],
    }
    model_turn, results_turn = body["contents"][1], body["contents"][2]
    assert model_turn["role"] == "model"
    assert model_turn["parts"] == [
        {"functionCall": {"id": "call_a", "name": "weather", "args": {"city": "Paris"}}},
        # An id Spine made up is never sent back to Gemini.
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
    ]
    # Both results answer their calls in one user turn, named by function.
    assert results_turn["role"] == "user"
    assert results_turn["parts"] == [
        {"functionResponse": {"id": "call_a", "name": "weather", "response": {"temp": 21}}},
        {"functionResponse": {"name": "weather", "response": {"output": "sunny"}}},
    ]


async def test_tool_result_for_unknown_call_is_refused(fake_providers: FakeProviders) -> None:
    request = chat(user("hi"), {"role": "tool", "tool_call_id": "nope", "content": "x"})
    with pytest.raises(InvalidRequestError, match="nope"):
        await get_provider(GEMINI).chat(make_target(GEMINI, fake_providers), request)
    assert fake_providers.requests() == []


async def test_function_calls_become_tool_calls(fake_providers: FakeProviders) -> None:
    fake_providers.script(
        "gemini",
        Reply(
            wire.response(
                parts=[
                    {"text": "Let me check.", "thought": True},
                    wire.function_call("weather", {"city": "Paris"}),
                    wire.function_call("weather", {"city": "Rome"}, call_id="gm-2"),
                ]
            )
        ),
    )
    answer = await get_provider(GEMINI).chat(make_target(GEMINI, fake_providers), chat())
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None  # the thought summary is not the answer
    calls = choice.message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    assert calls[0].id.startswith("call_gm")
    assert calls[1].id == "gm-2"


async def test_cached_tokens_are_a_subset_of_prompt_tokens(fake_providers: FakeProviders) -> None:
    # Given Gemini served 800 of 1000 prompt tokens from its cache and thought for 30
    usage = wire.usage(1000, 50, cached=800, thoughts=30, tool_use=10)
    fake_providers.script("gemini", Reply(wire.response("ok", usage_body=usage)))
    # When
    answer = await get_provider(GEMINI).chat(make_target(GEMINI, fake_providers), chat())
    # Then cached tokens are counted once, inside the prompt (not 1800, not 200 + 800)
    assert answer.usage.prompt_tokens == 1010
    assert answer.usage.cached_tokens == 800
    assert answer.usage.completion_tokens == 80
    assert answer.usage.completion_tokens_details.reasoning_tokens == 30
    assert answer.usage.total_tokens == usage["totalTokenCount"] == 1090


@pytest.mark.parametrize(
    ("gemini_reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
    ],
)
async def test_finish_reasons(
    fake_providers: FakeProviders, gemini_reason: str, expected: str
) -> None:
    fake_providers.script("gemini", Reply(wire.response("x", finish_reason=gemini_reason)))
    answer = await get_provider(GEMINI).chat(make_target(GEMINI, fake_providers), chat())
    assert answer.choices[0].finish_reason == expected


async def test_blocked_prompt_is_a_400_content_filter(fake_providers: FakeProviders) -> None:
    fake_providers.script("gemini", Reply(wire.blocked_prompt("PROHIBITED_CONTENT")))
    with pytest.raises(InvalidRequestError) as caught:
        await get_provider(GEMINI).chat(make_target(GEMINI, fake_providers), chat())
    assert caught.value.status_code == 400
    assert caught.value.code == "content_filter"
    assert "PROHIBITED_CONTENT" in caught.value.message


async def test_blocked_prompt_in_a_stream(fake_providers: FakeProviders) -> None:
    fake_providers.script("gemini", Events([wire.blocked_prompt()], done_marker=False))
    stream = get_provider(GEMINI).chat_stream(make_target(GEMINI, fake_providers), chat())
    with pytest.raises(InvalidRequestError) as caught:
        [c async for c in stream]
    assert caught.value.code == "content_filter"


async def test_stream_text_usage_and_finish(fake_providers: FakeProviders) -> None:
    chunks = [
        c
        async for c in get_provider(GEMINI).chat_stream(
            make_target(GEMINI, fake_providers), chat(user("one two three"))
        )
    ]
    sent = fake_providers.last("gemini")
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.query == {"alt": "sse"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: one two three"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 3
    assert chunks[-1]["usage"]["completion_tokens"] == 4  # the last cumulative count


async def test_stream_tool_calls(fake_providers: FakeProviders) -> None:
    last = wire.response(
        parts=[wire.function_call("weather", {"city": "Oslo"})],
        usage_body=wire.usage(12, 5, cached=4),
    )
    fake_providers.script("gemini", Events([last], done_marker=False))
    chunks = [
        c
        async for c in get_provider(GEMINI).chat_stream(make_target(GEMINI, fake_providers), chat())
    ]
    call = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    assert call["index"] == 0
    assert call["function"] == {"name": "weather", "arguments": '{"city": "Oslo"}'}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
