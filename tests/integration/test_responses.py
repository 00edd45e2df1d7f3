"""OpenAI's Responses API through the real chat function: the official `openai` client
(`responses.create`, `.parse`, `.stream`, `.retrieve`, `.delete`, `.input_items.list`)
against the local emulator, the providers' wire fakes and a real Postgres. Every call
is a chat call underneath (limits, fallbacks, one usage row with endpoint
`responses`); stored responses are chained by `previous_response_id` and kept apart
by tenant and principal."""

from __future__ import annotations

import json
from typing import Any

import openai
import psycopg
import pytest
from pydantic import BaseModel

from tests.fakes import Cut, Events, Reply, openai_api
from tests.integration.conftest import Env
from tests.integration.emulator import client, emulator_url, rows_when_written
from tests.integration.gateway import Gateway, Result

__all__ = ["client", "emulator_url"]

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def create(gateway: Gateway, key: str, **body: Any) -> Result:
    return gateway.request("POST", "/v1/responses", json_body=body, key=key)


def stored_count(env: Env) -> int:
    with psycopg.connect(env.db_url) as conn:
        row = conn.execute("SELECT count(*) FROM responses").fetchone()
    assert row is not None
    return int(row[0])


def sse_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each server-sent event."""
    events = []
    for block in body.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def tool_call_reply(call_id: str = "call_1", arguments: str = '{"city":"Paris"}') -> Reply:
    call = openai_api.tool_call(call_id, "get_weather", arguments)
    return Reply(openai_api.chat_completion(None, tool_calls=[call], finish_reason="tool_calls"))


# --- answers ------------------------------------------------------------------------------


def test_the_official_client_gets_a_response_and_a_usage_row(
    client: openai.OpenAI, env: Env
) -> None:
    # When the client asks with instructions and a sampling field
    raw = client.responses.with_raw_response.create(
        model="gpt-test", input="Say hello", instructions="Be brief.", temperature=0.2
    )
    response = raw.parse()
    # Then the answer is a Response with the model's text as an output message
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed" and response.model == "gpt-test"
    assert response.output_text == "echo: Say hello"
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    assert response.instructions == "Be brief." and response.temperature == 0.2
    # And the provider was asked in chat's shape, instructions first
    sent = env.fakes.last("openai").json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert sent["temperature"] == 0.2
    # And the usage is the provider's, in the Responses shape, with one usage row
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4, 3)
    assert response.usage.total_tokens == 7
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    [row] = rows_when_written(env)
    assert (row["endpoint"], row["status"], row["provider"]) == ("responses", "ok", "openai")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (4, 3)
    assert row["cost_usd"] > 0
    assert raw.headers["x-spine-model"] == "gpt-test"


@pytest.mark.parametrize(
    ("model", "provider"), [("gemini-test", "gemini"), ("claude-test", "anthropic")]
)
def test_translated_providers_answer_through_responses(
    client: openai.OpenAI, env: Env, model: str, provider: str
) -> None:
    response = client.responses.create(model=model, input="Say hello", instructions="Be brief.")
    streamed = client.responses.create(model=model, input="Say hello", stream=True)
    events = list(streamed)
    assert response.output_text == "echo: Say hello"
    assert response.usage is not None and response.usage.output_tokens > 0
    assert events[-1].type == "response.completed"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "echo: Say hello"
    assert final.usage is not None and final.usage.output_tokens == response.usage.output_tokens
    rows = rows_when_written(env, count=2)
    assert [(r["endpoint"], r["provider"], r["status"]) for r in rows] == [
        ("responses", provider, "ok")
    ] * 2
    assert all(r["completion_tokens"] > 0 for r in rows)


COMPATIBLE = (
    "  - id: compat-test\n"
    "    provider: openai_compatible\n"
    "    model: some-reasoner\n"
    "    base_url: {url}\n"
    "    pricing: {{input: 0.1, output: 0.2}}\n"
    "    context_window: 8000\n"
    "    capabilities: [chat, streaming]\n"
)


def test_an_openai_compatible_servers_reasoning_is_a_reasoning_item(
    client: openai.OpenAI, env: Env
) -> None:
    # Given a server of the kind the local worker is (llama.cpp sends reasoning_content)
    env.write_models(
        env.models_path.read_text().replace(
            "models:\n", "models:\n" + COMPATIBLE.format(url=env.fakes.openai_url), 1
        )
    )
    answer = openai_api.chat_completion("Paris.", usage_body=openai_api.usage(9, 5, reasoning=2))
    answer["choices"][0]["message"]["reasoning_content"] = "The capital is Paris."
    env.fakes.script("openai", Reply(answer))
    response = client.responses.create(model="compat-test", input="Capital of France?")
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert reasoning.content[0].text == "The capital is Paris."
    assert message.type == "message" and response.output_text == "Paris."
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 2
    [row] = rows_when_written(env)
    assert (row["endpoint"], row["provider"]) == ("responses", "openai_compatible")


class City(BaseModel):
    city: str
    population: int


def test_structured_output_with_parse_and_json_object(client: openai.OpenAI, env: Env) -> None:
    env.fakes.script(
        "openai",
        Reply(openai_api.chat_completion('{"city": "Paris", "population": 2100000}')),
        Reply(openai_api.chat_completion('{"ok": true}')),
    )
    # When the client parses into a pydantic model (text.format json_schema)
    parsed = client.responses.parse(model="gpt-test", input="Biggest city?", text_format=City)
    # Then the provider got chat's response_format, and the client its object
    assert parsed.output_parsed == City(city="Paris", population=2100000)
    schema_format = env.fakes.last("openai").json["response_format"]
    assert schema_format["type"] == "json_schema"
    assert schema_format["json_schema"]["name"] == "City"
    assert schema_format["json_schema"]["strict"] is True
    assert schema_format["json_schema"]["schema"]["required"] == ["city", "population"]
    assert parsed.text is not None and parsed.text.format is not None
    assert parsed.text.format.type == "json_schema"
    # And json_object maps to chat's json_object
    plain = client.responses.create(
        model="gpt-test", input="JSON please", text={"format": {"type": "json_object"}}
    )
    assert json.loads(plain.output_text) == {"ok": True}
    assert env.fakes.last("openai").json["response_format"] == {"type": "json_object"}


def test_a_function_tool_round_trip(client: openai.OpenAI, env: Env) -> None:
    env.fakes.script("openai", tool_call_reply())
    # Given a model that calls the function
    first = client.responses.create(
        model="gpt-test", input="Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="auto"
    )
    [call] = first.output
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == (
        "call_1",
        "get_weather",
        '{"city":"Paris"}',
    )
    sent = env.fakes.last("openai").json
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"},
        }
    ]
    assert sent["tool_choice"] == "auto"
    # When the client sends the function's output after that response
    second = client.responses.create(
        model="gpt-test",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21C"}],
        tools=[WEATHER_TOOL],
    )
    # Then the provider saw the whole conversation: question, call, output
    assert env.fakes.last("openai").json["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "Sunny, 21C", "tool_call_id": "call_1"},
    ]
    assert second.output_text == "echo: Weather in Paris?"
    assert second.previous_response_id == first.id


def test_a_named_function_choice_and_limits_map_to_chat(client: openai.OpenAI, env: Env) -> None:
    answer = openai_api.chat_completion("Par", finish_reason="length")
    env.fakes.script("openai", Reply(answer))
    response = client.responses.create(
        model="gpt-test",
        input="Capital of France?",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=20,
        parallel_tool_calls=False,
        reasoning={"effort": "low"},
    )
    sent = env.fakes.last("openai").json
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["max_completion_tokens"] == 20
    assert sent["parallel_tool_calls"] is False
    assert sent["reasoning_effort"] == "low"
    # A cut answer is incomplete, and says why
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]


# --- streams ------------------------------------------------------------------------------


def test_a_stream_assembles_what_a_plain_call_answers(client: openai.OpenAI, env: Env) -> None:
    plain = client.responses.create(model="gpt-test", input="Say hello", instructions="Hi.")
    # When the same request streams through the SDK's stream helper
    with client.responses.stream(model="gpt-test", input="Say hello", instructions="Hi.") as s:
        events = list(s)
        final = s.get_final_response()
    # Then the typed events come in order, numbered, and assemble the same answer
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 3  # the fake streams a word a chunk
    for name in ("response.output_item.added", "response.content_part.added",
                 "response.output_text.done", "response.content_part.done",
                 "response.output_item.done"):  # fmt: skip
        assert name in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == plain.output_text == "echo: Say hello"
    assert [item.type for item in final.output] == [item.type for item in plain.output]
    assert final.usage is not None and plain.usage is not None
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.instructions == "Hi." and final.status == "completed"
    # And it was stored before its last event: readable at once
    assert client.responses.retrieve(final.id).output_text == "echo: Say hello"
    rows = rows_when_written(env, count=2)
    assert [r["endpoint"] for r in rows] == ["responses", "responses"]
    assert rows[1]["completion_tokens"] == final.usage.output_tokens
    assert "usage_estimated" not in rows[1]["metadata"]


def test_a_streamed_tool_call_and_reasoning(client: openai.OpenAI, env: Env) -> None:
    model = "gpt-4o-mini"
    chunks = [
        openai_api.chunk(model, {"role": "assistant", "content": ""}),
        openai_api.chunk(model, {"reasoning_content": "Weather "}),
        openai_api.chunk(model, {"reasoning_content": "needed."}),
        openai_api.chunk(
            model,
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
        ),
        openai_api.chunk(
            model, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}
        ),
        openai_api.chunk(
            model, {"tool_calls": [{"index": 0, "function": {"arguments": ':"Oslo"}'}}]}
        ),
        openai_api.chunk(model, {}, "tool_calls"),
        openai_api.usage_chunk(model, openai_api.usage(5, 7)),
    ]
    env.fakes.script("openai", Events(chunks))
    with client.responses.stream(
        model="gpt-test", input="Weather in Oslo?", tools=[WEATHER_TOOL]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds.count("response.reasoning_text.delta") == 2
    assert kinds.count("response.function_call_arguments.delta") == 2
    assert "response.function_call_arguments.done" in kinds
    reasoning, call = final.output
    assert reasoning.type == "reasoning"
    assert reasoning.content is not None and reasoning.content[0].text == "Weather needed."
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == ("call_9", "get_weather", '{"city":"Oslo"}')
    assert final.usage is not None and final.usage.output_tokens == 7
    # The stored conversation carries the call (the reasoning is not sent back)
    client.responses.create(
        model="gpt-test",
        previous_response_id=final.id,
        input=[{"type": "function_call_output", "call_id": "call_9", "output": "Rain"}],
    )
    messages = env.fakes.last("openai").json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == '{"city":"Oslo"}'


def test_the_wire_has_typed_events_and_no_done_marker(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    result = create(gateway, api_key, model="gpt-test", input="Say hello", stream=True)
    assert result.status == 200, result.body
    assert result.headers["content-type"].startswith("text/event-stream")
    assert b"[DONE]" not in result.body
    events = sse_events(result.body)
    assert all(name == data["type"] for name, data in events)
    assert events[0][0] == "response.created" and events[-1][0] == "response.completed"


def test_a_stream_cut_mid_answer_ends_with_an_error_event_and_stores_nothing(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script("openai", Cut(after=3))
    result = create(gateway, api_key, model="gpt-test", input="Say hello", stream=True)
    assert result.status == 200, result.body
    events = sse_events(result.body)
    name, error = events[-1]
    assert name == "error" and error["type"] == "error"
    assert error["sequence_number"] == events[-2][1]["sequence_number"] + 1
    assert error["message"] and error["code"]
    assert "response.completed" not in [n for n, _ in events]
    assert stored_count(env) == 0
    [row] = env.usage_rows()
    assert (row["endpoint"], row["status"]) == ("responses", "error")


# --- stored responses ---------------------------------------------------------------------


def test_retrieve_list_input_items_and_delete(client: openai.OpenAI, env: Env) -> None:
    created = client.responses.create(
        model="gpt-test",
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]},
        ],
        metadata={"ticket": "42"},
    )
    # Retrieved as it was answered
    retrieved = client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert retrieved.metadata == {"ticket": "42"}
    # Its input items, newest first by default, as OpenAI lists them
    items = client.responses.input_items.list(created.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user"), ("message", "developer")]  # type: ignore[union-attr]
    assert items.data[1].content[0].text == "Answer in French."  # type: ignore[union-attr]
    assert items.first_id == items.data[0].id and items.has_more is False
    oldest = client.responses.input_items.list(created.id, order="asc", limit=1)
    assert [i.role for i in oldest.data] == ["developer"]  # type: ignore[union-attr]
    assert oldest.has_more is True
    rest = client.responses.input_items.list(created.id, order="asc", after=oldest.last_id)
    assert [i.role for i in rest.data] == ["user"] and rest.has_more is False  # type: ignore[union-attr]
    # Deleted: OpenAI's deleted object, then gone
    deleted = client.responses.with_raw_response.delete(created.id)
    assert json.loads(deleted.content) == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt-test", input="Again", previous_response_id=created.id)
    assert refused.value.code == "previous_response_not_found"
    assert stored_count(env) == 0


def test_previous_response_chains_the_whole_conversation(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    first = create(gateway, api_key, model="gpt-test", input="One", instructions="Old rules.")
    second = create(
        gateway, api_key, model="gpt-test", input="Two", previous_response_id=first.json()["id"]
    )
    third = create(
        gateway,
        api_key,
        model="gpt-test",
        input="Three",
        instructions="New rules.",
        previous_response_id=second.json()["id"],
    )
    assert third.status == 200, third.body
    # Earlier turns, inputs and outputs, in order; only this request's instructions
    assert env.fakes.last("openai").json["messages"] == [
        {"role": "system", "content": "New rules."},
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "echo: One"},
        {"role": "user", "content": "Two"},
        {"role": "assistant", "content": "echo: Two"},
        {"role": "user", "content": "Three"},
    ]
    # Deleting a middle response leaves the later ones whole
    assert (
        gateway.request("DELETE", f"/v1/responses/{second.json()['id']}", key=api_key).status == 200
    )
    fourth = create(
        gateway, api_key, model="gpt-test", input="Four", previous_response_id=third.json()["id"]
    )
    assert fourth.status == 200, fourth.body
    assert len(env.fakes.last("openai").json["messages"]) == 7


def test_store_false_keeps_nothing(gateway: Gateway, env: Env, api_key: str) -> None:
    result = create(gateway, api_key, model="gpt-test", input="Say hello", store=False)
    assert result.status == 200, result.body
    assert result.json()["store"] is False
    response_id = result.json()["id"]
    assert gateway.request("GET", f"/v1/responses/{response_id}", key=api_key).status == 404
    follow = create(
        gateway, api_key, model="gpt-test", input="Again", previous_response_id=response_id
    )
    assert follow.status == 400
    assert follow.error["code"] == "previous_response_not_found"
    assert follow.error["param"] == "previous_response_id"
    assert stored_count(env) == 0
    assert "store" not in env.fakes.last("openai").json  # chat's `store` means another thing


def test_another_tenant_or_principal_cannot_see_a_response(gateway: Gateway, env: Env) -> None:
    acme_bob = env.create_key("acme bob", principal="bob", tenant="acme")
    globex_bob = env.create_key("globex bob", principal="bob", tenant="globex")
    acme_alice = env.create_key("acme alice", principal="alice", tenant="acme")
    created = create(gateway, acme_bob, model="gpt-test", input="Secret plan")
    assert created.status == 200, created.body
    response_id = created.json()["id"]
    for other in (globex_bob, acme_alice):
        for method, path in (
            ("GET", f"/v1/responses/{response_id}"),
            ("GET", f"/v1/responses/{response_id}/input_items"),
            ("DELETE", f"/v1/responses/{response_id}"),
        ):
            result = gateway.request(method, path, key=other)
            assert result.status == 404, (method, path, result.body)
            assert result.error["type"] == "invalid_request_error"
        chained = create(
            gateway, other, model="gpt-test", input="Tell me", previous_response_id=response_id
        )
        assert chained.status == 400
        assert chained.error["code"] == "previous_response_not_found"
    # Untouched for its owner
    mine = gateway.request("GET", f"/v1/responses/{response_id}", key=acme_bob)
    assert (
        mine.status == 200 and mine.json()["output"][0]["content"][0]["text"] == "echo: Secret plan"
    )


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
            "input[0].call_id",
        ),
        ({"input": []}, "input"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"max_output_tokens": "10"}, "max_output_tokens"),
        ({"background": True}, "background"),
        ({"previous_response_id": "resp_nope"}, "previous_response_id"),
        ({"input": "a\u0000b"}, "input[0].content[0].text"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_keeps_nothing(
    gateway: Gateway, env: Env, api_key: str, body: dict[str, Any], param: str
) -> None:
    result = create(gateway, api_key, **{"model": "gpt-test", "input": "Hi", **body})
    assert result.status == 400, result.body
    assert result.error["param"] == param
    assert result.error["type"] == "invalid_request_error"
    assert env.fakes.requests() == [] and env.usage_rows() == [] and stored_count(env) == 0


def test_an_unknown_model_and_a_missing_key(gateway: Gateway, env: Env, api_key: str) -> None:
    assert create(gateway, api_key, model="nope", input="Hi").status == 404
    assert create(gateway, None, model="gpt-test", input="Hi").status == 401  # type: ignore[arg-type]
    assert gateway.request("GET", "/v1/responses/resp_x", key=api_key).status == 404


def test_unknown_fields_reach_openai_and_are_named_where_dropped(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    body = {"model": "gpt-test", "input": "Hi", "service_tier": "flex", "include": ["x"]}
    forwarded = create(gateway, api_key, **body)
    assert forwarded.status == 200, forwarded.body
    sent = env.fakes.last("openai").json
    assert sent["service_tier"] == "flex" and "include" not in sent
    assert forwarded.headers["x-spine-dropped-params"] == "include"
    dropped = create(gateway, api_key, **{**body, "model": "gemini-test", "max_output_tokens": 9})
    assert dropped.status == 200, dropped.body
    assert dropped.headers["x-spine-dropped-params"] == "include,service_tier"
