"""The OpenAI adapter drives the real `openai` SDK against the wire fake."""

from __future__ import annotations

import pytest

from spine.errors import SpineError
from spine.providers import get_provider
from spine.providers.errors import UpstreamAuthenticationError
from spine.registry.schema import ProviderKind
from spine.schemas.openai import CompletionRequest
from tests.fakes import Events, FakeProviders, Reply
from tests.fakes import openai_api as wire
from tests.providers.helpers import chat, make_target, user

OPENAI = ProviderKind.OPENAI
LLAMACPP = ProviderKind.LLAMACPP


async def test_answer_is_normalized_with_cached_and_reasoning_tokens(
    fake_providers: FakeProviders,
) -> None:
    # Given OpenAI answers with cached prompt tokens and reasoning tokens
    fake_providers.script(
        "openai",
        Reply(
            wire.chat_completion(
                "Paris.", usage_body=wire.usage(1200, 40, cached=1024, reasoning=16)
            )
        ),
    )
    # When
    answer = await get_provider(OPENAI).chat(make_target(OPENAI, fake_providers), chat())
    # Then
    assert answer.choices[0].message.content == "Paris."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens == 1200
    assert answer.usage.cached_tokens == 1024
    assert answer.usage.completion_tokens == 40
    assert answer.usage.completion_tokens_details.reasoning_tokens == 16
    assert answer.usage.total_tokens == 1240
    assert answer.system_fingerprint == "fp_fake"


async def test_request_goes_upstream_as_sent_with_the_provider_model_name(
    fake_providers: FakeProviders,
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = chat(
        {"role": "developer", "content": "Answer in JSON."},
        user("Where?"),
        temperature=0.2,
        max_completion_tokens=50,
        seed=7,
        stop=["END"],
        user="end-user-1",
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": schema}}],
        tool_choice="auto",
        session_id="spine-only",
    )
    await get_provider(OPENAI).chat(make_target(OPENAI, fake_providers), request)

    sent = fake_providers.last("openai")
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer upstream-key"
    body = sent.json
    assert body["model"] == "gpt-4o-mini"  # the provider's name, not the client's
    assert body["messages"][0] == {"role": "developer", "content": "Answer in JSON."}
    assert body["temperature"] == 0.2
    assert body["max_completion_tokens"] == 50
    assert body["seed"] == 7
    assert body["stop"] == ["END"]
    assert body["user"] == "end-user-1"
    assert body["response_format"]["json_schema"]["schema"] == schema  # alias, not schema_
    assert body["tools"][0]["function"]["name"] == "lookup"
    assert "session_id" not in body
    assert "stream" not in body


async def test_llamacpp_samplers_reach_llamacpp_servers_only(
    fake_providers: FakeProviders,
) -> None:
    request = chat(
        {"role": "developer", "content": "Be brief."},
        user("hi"),
        top_k=40,
        min_p=0.05,
        mirostat=2,
        grammar='root ::= "yes"',
        max_completion_tokens=8,
    )
    await get_provider(LLAMACPP).chat(make_target(LLAMACPP, fake_providers), request)

    body = fake_providers.last("openai").json
    assert body["model"] == "smollm2-135m"
    assert (body["top_k"], body["min_p"], body["mirostat"]) == (40, 0.05, 2)
    assert body["grammar"] == 'root ::= "yes"'
    # Local chat templates know no "developer"; older servers no max_completion_tokens.
    assert body["messages"][0]["role"] == "system"
    assert body["max_tokens"] == 8
    assert "max_completion_tokens" not in body
    # The OpenAI adapter declares the same fields unsupported, so the chat service refuses
    # them before any call; and even called directly it never sends them.
    assert get_provider(OPENAI).unsupported_params(request) == [
        "grammar",
        "min_p",
        "mirostat",
        "top_k",
    ]
    assert get_provider(LLAMACPP).unsupported_params(request) == []
    await get_provider(OPENAI).chat(make_target(OPENAI, fake_providers), request)
    body = fake_providers.last("openai").json
    assert not {"top_k", "min_p", "mirostat", "grammar"} & body.keys()


async def test_tool_calls_are_normalized(fake_providers: FakeProviders) -> None:
    calls = [wire.tool_call("call_1", "get_weather", '{"city": "Paris"}')]
    fake_providers.script(
        "openai",
        Reply(wire.chat_completion(None, tool_calls=calls, finish_reason="tool_calls")),
    )
    answer = await get_provider(OPENAI).chat(make_target(OPENAI, fake_providers), chat())
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].id == "call_1"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert choice.message.tool_calls[0].function.arguments == '{"city": "Paris"}'


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [("length", "length"), ("eos", "stop"), ("content_filter", "content_filter")],
)
async def test_finish_reasons_of_compatible_servers_are_normalized(
    fake_providers: FakeProviders, upstream: str, expected: str
) -> None:
    fake_providers.script("openai", Reply(wire.chat_completion("x", finish_reason=upstream)))
    answer = await get_provider(LLAMACPP).chat(make_target(LLAMACPP, fake_providers), chat())
    assert answer.choices[0].finish_reason == expected


async def test_stream_always_asks_for_usage_and_ends_with_it(
    fake_providers: FakeProviders,
) -> None:
    # Given a client that did not ask for usage
    request = chat(user("count to three"), stream=True)
    # When
    chunks = [
        c
        async for c in get_provider(OPENAI).chat_stream(
            make_target(OPENAI, fake_providers), request
        )
    ]
    # Then the upstream was asked for it, and the last chunk carries it
    assert fake_providers.last("openai").json["stream_options"] == {"include_usage": True}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: count to three"
    finishing = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishing[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_text_completion_is_native_on_llamacpp(fake_providers: FakeProviders) -> None:
    request = CompletionRequest(model="smollm2", prompt="Once upon", max_tokens=5, top_k=20)
    answer = await get_provider(LLAMACPP).complete(make_target(LLAMACPP, fake_providers), request)
    sent = fake_providers.last("openai")
    assert sent.path == "/v1/completions"
    assert sent.json["prompt"] == "Once upon"
    assert sent.json["top_k"] == 20
    assert answer.choices[0].text == "echo: Once upon"
    assert answer.usage.prompt_tokens == 2


async def test_text_completion_on_openai_asks_the_chat_api(fake_providers: FakeProviders) -> None:
    request = CompletionRequest(model="gpt-4o-mini", prompt="Say hi", max_tokens=5)
    answer = await get_provider(OPENAI).complete(make_target(OPENAI, fake_providers), request)
    assert fake_providers.last("openai").path == "/v1/chat/completions"
    assert answer.object == "text_completion"
    assert answer.choices[0].text == "echo: Say hi"


async def test_missing_openai_key_fails_before_any_call(fake_providers: FakeProviders) -> None:
    target = make_target(OPENAI, fake_providers, api_key=None)
    with pytest.raises(UpstreamAuthenticationError) as caught:
        await get_provider(OPENAI).chat(target, chat())
    assert caught.value.status_code == 502
    assert fake_providers.requests() == []


async def test_llamacpp_needs_no_key(fake_providers: FakeProviders) -> None:
    target = make_target(LLAMACPP, fake_providers, api_key=None)
    answer = await get_provider(LLAMACPP).chat(target, chat())
    assert answer.choices[0].message.content == "echo: hello there"


async def test_warm_client_reuses_its_connection(fake_providers: FakeProviders) -> None:
    provider = get_provider(OPENAI)
    target = make_target(OPENAI, fake_providers)
    await provider.chat(target, chat())
    await provider.chat(target, chat())
    first, second = fake_providers.requests("openai")
    assert first.client == second.client  # same source port: one pooled connection


def test_native_completion_fields_are_offered_by_compatible_servers_only() -> None:
    request = CompletionRequest(model="m", prompt="p", echo=True, suffix="!", top_k=5)
    assert get_provider(LLAMACPP).unsupported_params(request) == []
    assert get_provider(OPENAI).unsupported_params(request) == ["echo", "suffix", "top_k"]


async def test_streamed_llamacpp_request_carries_samplers_and_the_key(
    fake_providers: FakeProviders,
) -> None:
    # Given a streamed request with llama.cpp samplers (sent outside the SDK's arguments)
    request = chat(user("hi"), stream=True, top_k=40, mirostat=2, max_completion_tokens=8)
    # When it streams from a llama.cpp server
    chunks = [
        c
        async for c in get_provider(LLAMACPP).chat_stream(
            make_target(LLAMACPP, fake_providers), request
        )
    ]
    # Then one request went upstream with the samplers in its body, and the key
    sent = fake_providers.last("openai")
    assert sent.headers["authorization"] == "Bearer upstream-key"
    assert (sent.json["top_k"], sent.json["mirostat"], sent.json["max_tokens"]) == (40, 2, 8)
    assert (sent.json["stream"], sent.json["model"]) == (True, "smollm2-135m")
    assert chunks[-1]["usage"]["total_tokens"] > 0


async def test_streamed_deltas_keep_message_fields_only(fake_providers: FakeProviders) -> None:
    # Given a server that streams a tool call with nulls and fields of its own
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    fake_providers.script(
        "openai",
        Events(
            [
                wire.chunk("m", {"role": "assistant", "content": None, "reasoning": "hm"}),
                wire.chunk("m", {"tool_calls": [{**call, "function": {"name": "f", "x": None}}]}),
                wire.chunk("m", {"tool_calls": [{"index": 0, "id": None, "function": None}]}),
                {**wire.chunk("m", {}, "eos"), "timings": {"predicted_ms": 1.0}},
                wire.usage_chunk("m", wire.usage(3, 2, cached=1)),
            ]
        ),
    )
    request = chat(user("call f"), stream=True)
    # When
    chunks = [
        c
        async for c in get_provider(LLAMACPP).chat_stream(
            make_target(LLAMACPP, fake_providers), request
        )
    ]
    # Then each delta has OpenAI's message fields, nulls left out; finish reasons are
    # OpenAI's; and the usage chunk is in Spine's form
    assert [c["choices"][0]["delta"] for c in chunks[:4]] == [
        {"role": "assistant", "content": ""},  # as OpenAI sends its role chunk
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
            ]
        },
        {"tool_calls": [{"index": 0}]},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:4]] == [None, None, None, "stop"]
    assert "timings" not in chunks[3]
    assert chunks[4]["choices"] == []
    assert chunks[4]["usage"]["prompt_tokens_details"]["cached_tokens"] == 1
    assert chunks[4]["usage"]["total_tokens"] == 5


async def test_a_stream_event_that_is_not_an_object_is_a_bad_upstream_answer(
    fake_providers: FakeProviders,
) -> None:
    fake_providers.script("openai", Events([[1, 2, 3]]))
    request = chat(user("hi"), stream=True)
    provider = get_provider(OPENAI)
    with pytest.raises(SpineError) as caught:
        async for _ in provider.chat_stream(make_target(OPENAI, fake_providers), request):
            pass
    assert caught.value.status_code == 502
