"""`stream: true` on the text capabilities (summarize, rewrite, translate) through the
capabilities function's real Lambda handler: `delta` events of the model's text, then
one `result` event equal to what the JSON route answers, or an `error` event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes import Cut, Events, Reply, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

ARTICLE = "Ada Lovelace met Charles Babbage in London in 1833. She wrote an algorithm."
SUMMARY = {"summary": "Lovelace met Babbage.", "key_points": ["They met in 1833."]}


@pytest.fixture
def alice(env: Env) -> str:
    return env.create_key("alice", principal="alice", tenant="acme")


def streamed(text: str, pieces: int = 3) -> Events:
    """The model's answer `text` as OpenAI streams it, in `pieces` content chunks, with
    its usage last."""
    size = -(-len(text) // pieces)
    parts = [text[i : i + size] for i in range(0, len(text), size)]
    events: list[Any] = [openai_api.chunk("gpt-4o-mini", {"role": "assistant", "content": ""})]
    events += [openai_api.chunk("gpt-4o-mini", {"content": part}) for part in parts]
    events.append(openai_api.chunk("gpt-4o-mini", {}, "stop"))
    events.append(openai_api.usage_chunk("gpt-4o-mini", openai_api.usage(10, 2)))
    return Events(events)


def sse_events(result: Result) -> list[tuple[str, dict[str, Any]]]:
    assert result.status == 200, result.body
    assert result.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in result.body.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def post(gateway: Gateway, key: str, path: str, **body: Any) -> Result:
    return gateway.request("POST", path, json_body=body, key=key)


@pytest.mark.parametrize(
    ("path", "fields", "answer"),
    [
        ("/v1/summarize", {}, json.dumps(SUMMARY)),
        ("/v1/rewrite", {"mode": "professional"}, "Ada Lovelace met Charles Babbage in 1833."),
        ("/v1/translate", {"target_language": "French"}, "Ada Lovelace a rencontré Babbage."),
    ],
)
def test_a_streamed_capability_sends_the_text_then_the_same_result_as_json(
    env: Env, gateway: Gateway, alice: str, path: str, fields: dict[str, Any], answer: str
) -> None:
    # Given the same answer, once streamed and once whole
    env.fakes.script("openai", streamed(answer))
    env.fakes.script(
        "openai", Reply(openai_api.chat_completion(answer, usage_body=openai_api.usage(10, 2)))
    )
    # When the capability is asked for with stream: true, then without
    events = sse_events(post(gateway, alice, path, content=ARTICLE, stream=True, **fields))
    whole = post(gateway, alice, path, content=ARTICLE, **fields)
    assert whole.status == 200, whole.body
    # Then the deltas are the model's text as it came, in order
    names = [name for name, _ in events]
    assert names == ["delta"] * (len(names) - 1) + ["result"]
    assert len(names) >= 3
    assert "".join(data["text"] for name, data in events if name == "delta") == answer
    assert all(data["type"] == name for name, data in events)
    # And the result event is the JSON route's answer, but for the latency
    result = events[-1][1]["result"]
    expected = whole.json()
    for body in (result, expected):
        assert body["usage"].pop("latency_ms") >= 0
    assert result == expected
    assert result["usage"]["total_tokens"] == 12 and result["usage"]["repaired"] is False
    # And the upstream request was a stream that asked for usage
    streamed_request = env.fakes.requests("openai")[0].json
    assert streamed_request["stream"] is True
    assert streamed_request["stream_options"] == {"include_usage": True}
    # And each call has its usage row, under the capability's name
    rows = env.usage_rows()
    assert [row["endpoint"] for row in rows] == [f"capability.{path[4:]}"] * 2
    assert rows[0]["status"] == "ok" and rows[0]["metadata"]["stream"] is True


def test_an_invalid_streamed_answer_is_repaired_before_the_result(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given a streamed summary that is not JSON, then a valid repair
    env.fakes.script("openai", streamed("Lovelace met Babbage."))
    env.fakes.script("openai", Reply(openai_api.chat_completion(json.dumps(SUMMARY))))
    # When it is streamed
    events = sse_events(post(gateway, alice, "/v1/summarize", content=ARTICLE, stream=True))
    # Then the deltas were the invalid text, and the result the repaired answer
    assert events[-1][0] == "result"
    result = events[-1][1]["result"]
    assert result["summary"] == SUMMARY["summary"] and result["usage"]["repaired"] is True
    ids = [row["request_id"] for row in env.usage_rows()]
    assert ids[1] == f"{ids[0]}.repair"


def test_an_answer_still_invalid_after_the_repair_is_an_error_event(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given a streamed summary that is not JSON, twice
    env.fakes.script("openai", streamed("not json"))
    env.fakes.script("openai", Reply(openai_api.chat_completion("still not json")))
    # When it is streamed
    events = sse_events(post(gateway, alice, "/v1/summarize", content=ARTICLE, stream=True))
    # Then the stream ends with an error event in OpenAI's error shape, no result
    assert [name for name, _ in events][-1] == "error"
    assert "result" not in [name for name, _ in events]
    error = events[-1][1]["error"]
    assert error["code"] == "invalid_model_output" and error["type"] == "upstream_error"


def test_an_upstream_failure_mid_stream_is_an_error_event_with_its_usage_row(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given an upstream that drops the connection after two events
    env.fakes.script("openai", Cut(after=2))
    # When a rewrite is streamed
    events = sse_events(
        post(gateway, alice, "/v1/rewrite", content=ARTICLE, mode="clean", stream=True)
    )
    # Then what came is relayed, then an error event; no result
    names = [name for name, _ in events]
    assert names[-1] == "error" and "result" not in names
    assert set(events[-1][1]["error"]) == {"message", "type", "param", "code"}
    # And the call's usage row says it failed
    [row] = env.usage_rows()
    assert row["status"] == "error" and row["endpoint"] == "capability.rewrite"


def test_stream_is_refused_where_the_answer_is_not_text(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # When a non-text capability is asked to stream
    result = post(gateway, alice, "/v1/infer-title", content=ARTICLE, stream=True)
    # Then it is a 400 naming the field, and no model was called
    assert result.status == 400
    assert result.error["param"] == "stream"
    assert env.fakes.requests("openai") == []


def test_through_spine_local_the_text_arrives_as_it_is_generated(env: Env, alice: str) -> None:
    import time

    import httpx

    from tests.fakes.script import Stall
    from tests.integration.emulator import running_emulator

    # Given a model that streams a few words, then pauses 2 s before the rest
    env.fakes.script("openai", Stall(after=3, seconds=2.0))
    arrivals: list[tuple[str, float]] = []
    with (
        running_emulator(env) as url,
        httpx.stream(
            "POST",
            f"{url}/v1/rewrite",
            headers={"Authorization": f"Bearer {alice}"},
            json={"content": ARTICLE, "mode": "clean", "stream": True},
            timeout=30,
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                arrivals.append((line.removeprefix("event: "), time.monotonic()))
    # Then the first words reached the client before the pause ended, not with the rest
    first_delta = next(at for name, at in arrivals if name == "delta")
    assert arrivals[-1][0] == "result"
    assert arrivals[-1][1] - first_delta > 1.5, arrivals
