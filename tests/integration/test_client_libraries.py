"""The client libraries people point at an OpenAI-compatible gateway, unchanged, against
`spine local` (hosted providers behind their wire fakes): LangChain's ChatOpenAI and
OpenAIEmbeddings, the litellm SDK and the `llm` command line. Anthropic's SDK has its
own suite (test_messages.py); the official openai client is used throughout.

Each library is configured as its documentation says for an OpenAI-compatible server:
a base URL and a key, nothing Spine-specific."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.fakes import openai_api
from tests.fakes.script import Reply
from tests.integration.conftest import Env
from tests.integration.emulator import emulator_url, rows_when_written
from tests.integration.test_embeddings import embed_model

__all__ = ["embed_model", "emulator_url"]


class City(BaseModel):
    name: str
    population: int


def _tool_call_answer() -> dict[str, Any]:
    return openai_api.chat_completion(
        None,
        tool_calls=[openai_api.tool_call("call_1", "get_weather", '{"city": "Oslo"}')],
        finish_reason="tool_calls",
    )


# --- LangChain ---------------------------------------------------------------------------


def test_langchain_chat_tools_and_structured_output(
    emulator_url: str, api_key: str, env: Env
) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    chat = ChatOpenAI(
        model="gpt-test", base_url=f"{emulator_url}/v1", api_key=api_key, max_retries=0
    )
    assert chat.invoke("hello langchain").content == "echo: hello langchain"

    env.fakes.script("openai", Reply(_tool_call_answer()))
    called = chat.bind_tools([get_weather]).invoke("Weather in Oslo?")
    assert called.tool_calls == [  # type: ignore[attr-defined]
        {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_1", "type": "tool_call"}
    ]
    sent = env.fakes.last("openai").json
    assert sent["tools"][0]["function"]["name"] == "get_weather"

    env.fakes.script(
        "openai", Reply(openai_api.chat_completion('{"name": "Oslo", "population": 717710}'))
    )
    city = chat.with_structured_output(City).invoke("The capital of Norway?")
    assert city == City(name="Oslo", population=717710)
    fmt = env.fakes.last("openai").json["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "City"
    # Its Responses API mode, with a tool call
    responses_chat = ChatOpenAI(
        model="gpt-test",
        base_url=f"{emulator_url}/v1",
        api_key=api_key,
        max_retries=0,
        use_responses_api=True,
    )
    assert responses_chat.invoke("hello responses").text == "echo: hello responses"
    env.fakes.script("openai", Reply(_tool_call_answer()))
    called = responses_chat.bind_tools([get_weather]).invoke("Weather in Oslo?")
    assert [(c["name"], c["args"]) for c in called.tool_calls] == [  # type: ignore[attr-defined]
        ("get_weather", {"city": "Oslo"})
    ]
    rows = rows_when_written(env, 5)
    assert [r["endpoint"] for r in rows] == ["chat.completions"] * 3 + ["responses"] * 2


def test_langchain_embeddings(emulator_url: str, api_key: str, env: Env, embed_model: str) -> None:
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(
        model=embed_model,
        base_url=f"{emulator_url}/v1",
        api_key=api_key,  # type: ignore[arg-type]
        max_retries=0,
        # Its default splits by tiktoken, whose vocabularies it downloads at run time.
        check_embedding_ctx_length=False,
    )
    vectors = embeddings.embed_documents(["one two", "three"])
    assert vectors == [[2.0, 7.0, 0.5], [1.0, 5.0, 0.5]]
    assert embeddings.embed_query("four five six") == [3.0, 13.0, 0.5]
    assert [r["endpoint"] for r in env.usage_rows()] == ["embeddings", "embeddings"]


# --- litellm as a client -------------------------------------------------------------------


@pytest.fixture
def litellm_offline(monkeypatch: pytest.MonkeyPatch) -> Any:
    # Its model price map is fetched from the internet at import unless told otherwise.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("LITELLM_TELEMETRY", "False")
    import litellm

    return litellm


def test_litellm_completion_stream_and_embedding(
    emulator_url: str, api_key: str, env: Env, embed_model: str, litellm_offline: Any
) -> None:
    litellm = litellm_offline
    common = {"api_base": f"{emulator_url}/v1", "api_key": api_key, "num_retries": 0}
    answer = litellm.completion(
        model="openai/gpt-test",
        messages=[{"role": "user", "content": "hello litellm"}],
        **common,
    )
    assert answer.choices[0].message.content == "echo: hello litellm"
    assert answer.usage.prompt_tokens > 0
    pieces = litellm.completion(
        model="openai/gpt-test",
        messages=[{"role": "user", "content": "stream this please"}],
        stream=True,
        **common,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in pieces if chunk.choices)
    assert text == "echo: stream this please"
    vectors = litellm.embedding(model=f"openai/{embed_model}", input=["one two"], **common)
    assert vectors.data[0]["embedding"] == [2.0, 7.0, 0.5]
    rows = rows_when_written(env, 3)
    assert sorted(r["endpoint"] for r in rows) == ["chat.completions"] * 2 + ["embeddings"]


# --- the llm command line ------------------------------------------------------------------


def _llm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm", *args],
        env={**os.environ, "LLM_USER_PATH": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_llm_command_line_chats_through_spine(
    emulator_url: str, api_key: str, env: Env, tmp_path: Path
) -> None:
    home = tmp_path / "llm"
    home.mkdir()
    # llm's documented way to add an OpenAI-compatible server's model.
    (home / "extra-openai-models.yaml").write_text(
        "- model_id: spine-gpt\n"
        "  model_name: gpt-test\n"
        f"  api_base: {emulator_url}/v1\n"
        "  api_key_name: spine\n"
    )
    (home / "keys.json").write_text(json.dumps({"spine": api_key}))
    said = _llm(home, "-m", "spine-gpt", "--no-log", "hello from llm")
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip() == "echo: hello from llm"
    streamed = _llm(home, "-m", "spine-gpt", "--no-log", "-o", "temperature", "0.2", "again")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.strip() == "echo: again"
    assert env.fakes.last("openai").json["temperature"] == 0.2
    assert [r["endpoint"] for r in rows_when_written(env, 2)] == ["chat.completions"] * 2


# --- the OpenAI Agents SDK ---------------------------------------------------------------


def test_the_agents_sdk_with_its_default_settings_runs_a_tool_using_agent(
    emulator_url: str, api_key: str, env: Env
) -> None:
    from agents import (
        Agent,
        Runner,
        function_tool,
        set_default_openai_client,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    # A gpt-5 name: the SDK then sends reasoning effort "none" and a text verbosity,
    # which any gateway that refuses fields OpenAI accepts turns into a 400.
    env.write_models(env.models_path.read_text().replace("[gpt-alias]", "[gpt-alias, gpt-5.1]"))
    set_tracing_disabled(True)  # its traces would go to OpenAI
    set_default_openai_client(
        AsyncOpenAI(base_url=f"{emulator_url}/v1", api_key=api_key, max_retries=0),
        use_for_tracing=False,
    )

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}."

    env.fakes.script("openai", Reply(_tool_call_answer()))
    env.fakes.script("openai", Reply(openai_api.chat_completion("Oslo is sunny today.")))
    agent = Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        model="gpt-5.1",
        tools=[get_weather],
    )
    result = Runner.run_sync(agent, "What is the weather in Oslo?")
    assert result.final_output == "Oslo is sunny today."
    first, second = (r.json for r in env.fakes.requests("openai"))
    assert first["messages"][0] == {"role": "system", "content": "Answer with the weather tool."}
    assert first["tools"][0]["function"]["name"] == "get_weather"
    # The tool's answer went back to the model after its call.
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_1"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "Sunny in Oslo.",
    }
    rows = rows_when_written(env, 2)
    assert [r["endpoint"] for r in rows] == ["responses", "responses"]
