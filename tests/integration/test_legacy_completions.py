"""Legacy text completions: a list of prompts is answered (one choice per prompt), and
`echo` / `logprobs` / `suffix` are honoured by servers with their own completions,
refused (400 naming them) by providers that answer as chat, never silently ignored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

COMPATIBLE_MODEL = (
    "  - id: compat-test\n"
    "    provider: openai_compatible\n"
    "    model: some-model\n"
    "    base_url: {url}\n"
    "    context_window: 8000\n"
    "    capabilities: [chat, completions, streaming]\n"
)


def complete(gateway: Gateway, key: str, **body: Any) -> Result:
    return gateway.request("POST", "/v1/completions", json_body=body, key=key)


def test_several_prompts_get_one_choice_each_from_a_chat_model(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    result = complete(gateway, api_key, model="gpt-test", prompt=["Say one", "Say two"])
    assert result.status == 200, result.body
    answer = result.json()
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    sent = env.fakes.requests("openai")
    assert sorted(r.json["messages"][0]["content"] for r in sent) == ["Say one", "Say two"]
    # One usage row for the request, its tokens the sum of both calls
    [row] = env.usage_rows()
    assert row["prompt_tokens"] == answer["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize(("field", "value"), [("echo", True), ("logprobs", 2), ("suffix", "!")])
def test_what_a_chat_model_cannot_honour_is_refused_by_name(
    gateway: Gateway, env: Env, api_key: str, field: str, value: Any
) -> None:
    result = complete(gateway, api_key, model="gpt-test", prompt="Say hi", **{field: value})
    assert result.status == 400, result.body
    assert result.error["param"] == field
    assert env.fakes.requests("openai") == [] and env.usage_rows() == []


def test_a_server_with_its_own_completions_gets_them(env: Env, api_key: str) -> None:
    env.write_models(
        env.models_path.read_text().replace(
            "models:\n", "models:\n" + COMPATIBLE_MODEL.format(url=env.fakes.openai_url), 1
        )
    )
    gateway = Gateway()
    try:
        result = complete(
            gateway, api_key, model="compat-test", prompt=["a", "b"], echo=True, logprobs=1
        )
    finally:
        gateway.close()
    assert result.status == 200, result.body
    [sent] = env.fakes.requests("openai")
    assert sent.path.endswith("/completions")
    assert (sent.json["prompt"], sent.json["echo"], sent.json["logprobs"]) == (["a", "b"], True, 1)


def test_several_prompts_stream_from_a_chat_model_as_one_stream(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    result = complete(
        gateway,
        api_key,
        model="gpt-test",
        prompt=["Say one", "Say two please"],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert result.status == 200, result.body
    payloads = [
        line.removeprefix("data: ")
        for line in result.body.decode().splitlines()
        if line.startswith("data: ")
    ]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    texts: dict[int, str] = {}
    for chunk in chunks[:-1]:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    # One choice per prompt, each the answer to its own prompt, under one id
    assert texts == {0: "echo: Say one", 1: "echo: Say two please"}
    assert len({c["id"] for c in chunks}) == 1
    # One usage chunk at the end, the sum of both calls, and one usage row
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["prompt_tokens"] > 0
    sent = env.fakes.requests("openai")
    assert sorted(r.json["messages"][0]["content"] for r in sent) == ["Say one", "Say two please"]
    [row] = env.usage_rows()
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
