"""Requests with fields Spine does not know, or that the chosen provider does not take,
are served rather than refused: forwarded as they came to providers that speak
OpenAI's API, dropped for the others and named in `x-spine-dropped-params`; a model
or profile marked `strict: true` refuses them (400), as before. New values OpenAI
accepts are accepted, and a content part the model cannot take is a 400 naming the
capability."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.integration.conftest import Env
from tests.integration.emulator import emulator_url
from tests.integration.gateway import Gateway, Result

HELLO: list[Any] = [{"role": "user", "content": "Say hello"}]
__all__ = ["emulator_url"]


def chat(gateway: Gateway, key: str, **body: Any) -> Result:
    return gateway.request(
        "POST", "/v1/chat/completions", json_body={"messages": HELLO, **body}, key=key
    )


def test_unknown_fields_reach_an_openai_speaking_provider_as_sent(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    result = chat(
        gateway,
        api_key,
        model="gpt-test",
        service_tier="flex",
        verbosity="low",
        prompt_cache_key="k1",
        safety_identifier="user-123",
        reasoning_effort="none",
        frobnicate={"a": 1},
    )
    assert result.status == 200, result.body
    assert "x-spine-dropped-params" not in result.headers
    [sent] = env.fakes.requests("openai")
    for name, value in {
        "service_tier": "flex",
        "verbosity": "low",
        "prompt_cache_key": "k1",
        "safety_identifier": "user-123",
        "reasoning_effort": "none",
        "frobnicate": {"a": 1},
    }.items():
        assert sent.json[name] == value, name


def test_what_another_provider_does_not_take_is_dropped_and_named(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    result = chat(
        gateway, api_key, model="gemini-test", logit_bias={"50256": -100}, service_tier="flex", n=2
    )
    assert result.status == 200, result.body
    assert result.headers["x-spine-dropped-params"] == "logit_bias,n,service_tier"
    [sent] = env.fakes.requests("gemini")
    assert b"service_tier" not in sent.body


def test_llamacpp_samplers_sent_to_openai_are_dropped_not_refused(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    result = chat(gateway, api_key, model="gpt-test", top_k=5)
    assert result.status == 200, result.body
    assert result.headers["x-spine-dropped-params"] == "top_k"
    [sent] = env.fakes.requests("openai")
    assert "top_k" not in sent.json


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [("frobnicate", 1, "unknown_parameter"), ("top_k", 5, "unsupported_parameter")],
)
def test_a_strict_model_refuses_them(
    env: Env, api_key: str, field: str, value: Any, code: str
) -> None:
    text = env.models_path.read_text()
    env.write_models(
        text.replace(
            "    aliases: [gpt-alias]\n", "    aliases: [gpt-alias]\n    strict: true\n", 1
        )
    )
    gateway = Gateway()
    try:
        result = chat(gateway, api_key, model="gpt-test", **{field: value})
    finally:
        gateway.close()
    assert result.status == 400, result.body
    assert result.error["param"] == field
    assert result.error["code"] == code
    assert env.fakes.requests("openai") == []


def test_n_above_one_answers_several_choices_where_the_provider_gives_them(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    result = chat(gateway, api_key, model="gpt-test", n=2)
    assert result.status == 200, result.body
    [sent] = env.fakes.requests("openai")
    assert sent.json["n"] == 2


@pytest.mark.parametrize(
    ("part", "capability"),
    [
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "audio"),
        ({"type": "file", "file": {"file_id": "file-1"}}, "file"),
    ],
)
def test_a_part_the_model_cannot_take_is_a_400_naming_the_capability(
    gateway: Gateway, env: Env, api_key: str, part: dict[str, Any], capability: str
) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "gemini-test", "messages": messages},
        key=api_key,
    )
    assert result.status == 400, result.body
    assert result.error["code"] == "unsupported_capability"
    assert capability in result.error["message"]
    assert env.fakes.requests("gemini") == []


def test_custom_tools_need_an_openai_speaking_provider(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    tools = [{"type": "custom", "custom": {"name": "grep", "description": "search"}}]
    forwarded = chat(gateway, api_key, model="gpt-test", tools=tools)
    assert forwarded.status == 200, forwarded.body
    assert env.fakes.requests("openai")[0].json["tools"] == tools
    refused = chat(gateway, api_key, model="claude-test", tools=tools)
    assert refused.status == 400
    assert refused.error["param"] == "tools"


def test_the_official_client_with_new_fields_and_extra_body(
    emulator_url: str, env: Env, api_key: str
) -> None:
    # The Agents SDK's defaults for gpt-5 models, through the openai client itself
    with openai.OpenAI(base_url=f"{emulator_url}/v1", api_key=api_key, max_retries=0) as sdk:
        answer = sdk.chat.completions.create(
            model="gpt-test",
            messages=HELLO,
            reasoning_effort="none",
            verbosity="low",
            extra_body={"frobnicate": True},
        )
    assert answer.choices[0].message.content
    [sent] = env.fakes.requests("openai")
    assert (sent.json["verbosity"], sent.json["frobnicate"]) == ("low", True)


REASONING_SERVER = (
    "  - id: reasoner\n"
    "    provider: openai_compatible\n"
    "    model: some-reasoner\n"
    "    base_url: {url}\n"
    "    context_window: 8000\n"
    "    capabilities: [chat, streaming]\n"
)


def test_a_servers_reasoning_content_passes_through(env: Env, api_key: str) -> None:
    from tests.fakes import Events, Reply, openai_api

    env.write_models(
        env.models_path.read_text().replace(
            "models:\n", "models:\n" + REASONING_SERVER.format(url=env.fakes.openai_url), 1
        )
    )
    answer = openai_api.chat_completion("Paris.", usage_body=openai_api.usage(9, 3))
    answer["choices"][0]["message"]["reasoning_content"] = "The capital is Paris."
    chunks = [
        openai_api.chunk("some-reasoner", {"role": "assistant", "content": ""}),
        openai_api.chunk("some-reasoner", {"reasoning_content": "Think"}),
        openai_api.chunk("some-reasoner", {"content": "Paris."}, "stop"),
    ]
    env.fakes.script("openai", Reply(answer), Events(chunks))
    gateway = Gateway()
    try:
        plain = chat(gateway, api_key, model="reasoner")
        streamed = chat(gateway, api_key, model="reasoner", stream=True)
    finally:
        gateway.close()
    assert plain.status == 200, plain.body
    assert plain.json()["choices"][0]["message"]["reasoning_content"] == "The capital is Paris."
    assert streamed.status == 200, streamed.body
    assert b'"reasoning_content":"Think"' in streamed.body
    # A model that sends none gets no such key (it is not one of OpenAI's fields)
    env.fakes.script("openai", Reply(openai_api.chat_completion("Hi")))
    gateway = Gateway()
    try:
        hosted = chat(gateway, api_key, model="gpt-test")
    finally:
        gateway.close()
    assert "reasoning_content" not in hosted.json()["choices"][0]["message"]


def test_the_first_chunk_has_content_as_openai_sends_it(env: Env, api_key: str) -> None:
    from tests.fakes import Events, openai_api

    env.write_models(
        env.models_path.read_text().replace(
            "models:\n", "models:\n" + REASONING_SERVER.format(url=env.fakes.openai_url), 1
        )
    )
    # Given a server whose role chunk has no `content` key (llama-server's)
    chunks = [
        openai_api.chunk("some-reasoner", {"role": "assistant"}),
        openai_api.chunk("some-reasoner", {"content": "Hi"}, "stop"),
    ]
    env.fakes.script("openai", Events(chunks))
    gateway = Gateway()
    try:
        streamed = chat(gateway, api_key, model="reasoner", stream=True)
    finally:
        gateway.close()
    assert streamed.status == 200, streamed.body
    assert b'"delta":{"role":"assistant","content":""}' in streamed.body
