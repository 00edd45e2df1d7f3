"""The Responses API onto chat and back: a request's items as chat messages, and a
chat stream's chunks as the Responses API's typed events (the translator is stateful;
the official client's assembly of these events is tests/integration/test_responses)."""

from __future__ import annotations

from typing import Any

import pytest

from spine.errors import InvalidRequestError
from spine.pipeline.responses_answer import ResponseDraft
from spine.pipeline.responses_chat import chat_request, input_items
from spine.pipeline.responses_events import ResponseEvents, ResponsesMeter
from spine.schemas.responses import ResponsesRequest
from tests.fakes import openai_api

MODEL = "gpt-test"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return openai_api.chunk("upstream-model", delta, finish)


def run(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events = ResponseEvents(ResponseDraft(), MODEL)
    out = [event for c in chunks for event in events.feed(c)]
    return out + events.closing()


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# --- streams ------------------------------------------------------------------------------


def test_text_streams_as_one_message_item_in_order() -> None:
    events = run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            openai_api.usage_chunk("upstream-model", openai_api.usage(4, 2)),
        ]
    )
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[6]["text"] == "Hello"
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["model"] == MODEL
    [message] = final["output"]
    assert message["content"] == [
        {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
    ]
    assert message["id"] == events[2]["item"]["id"] == events[4]["item_id"]
    assert final["usage"]["input_tokens"] == 4 and final["usage"]["output_tokens"] == 2
    assert final["id"] == events[0]["response"]["id"]


def test_reasoning_then_parallel_tool_calls_are_separate_items() -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": ""}}
    events = run(
        [
            chunk({"reasoning_content": "Think."}),
            chunk({"tool_calls": [{"index": 0, "id": "call_a", **call}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "call_b", **call}]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"x":1}'}}]}),
            chunk({}, "tool_calls"),
        ]
    )
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "reasoning"),
        (1, "function_call"),
        (2, "function_call"),
    ]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["output_index"], e["arguments"], e["name"]) for e in done] == [
        (1, "{}", "f"),
        (2, '{"x":1}', "f"),
    ]
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == [
        "reasoning",
        "function_call",
        "function_call",
    ]
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "Think."}]
    assert [item.get("call_id") for item in final["output"][1:]] == ["call_a", "call_b"]
    assert final["usage"] is None  # the provider sent none: the relay estimates


def test_an_answer_cut_by_the_limit_is_incomplete_and_an_empty_one_is_a_message() -> None:
    cut = run([chunk({"content": "Par"}), chunk({}, "length")])
    assert cut[-1]["type"] == "response.incomplete"
    response = cut[-1]["response"]
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    empty = run([chunk({"role": "assistant", "content": ""}), chunk({}, "stop")])
    assert empty[-1]["response"]["output"][0]["content"][0]["text"] == ""
    assert "response.output_item.done" in types(empty)


def test_the_meter_reads_usage_and_generated_text() -> None:
    meter = ResponsesMeter(MODEL)
    for event in run(
        [
            chunk({"content": "four"}),
            chunk({}, "stop"),
            openai_api.usage_chunk("upstream-model", openai_api.usage(7, 1, cached=3)),
        ]
    ):
        assert meter.shape(event) is event
    assert meter.streamed_bytes == 4
    assert meter.usage is not None
    assert (meter.usage.prompt_tokens, meter.usage.completion_tokens) == (7, 1)
    assert meter.usage.cached_tokens == 3


# --- requests -----------------------------------------------------------------------------


def test_items_become_chat_messages() -> None:
    body = ResponsesRequest.model_validate(
        {
            "model": MODEL,
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "Checking."},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call_output", "call_id": "c1", "output": "Sun"},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "And this?"},
                        {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                    ],
                },
            ],
        }
    )
    request, ignored = chat_request(body, [], input_items(body), ResponseDraft())
    messages = [m.model_dump(exclude_none=True) for m in request.messages]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[2]["content"] == "Checking."
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["c1", "c2"]
    assert messages[3] == {"role": "tool", "content": "Sun", "tool_call_id": "c1"}
    assert messages[4]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://x/y.png", "detail": "low"},
    }
    assert ignored == ()
    assert request.draft.id.startswith("resp_")


def test_a_tool_output_without_its_call_is_refused() -> None:
    body = ResponsesRequest.model_validate(
        {
            "model": MODEL,
            "input": [
                {"role": "user", "content": "Hi"},
                {"type": "function_call_output", "call_id": "ghost", "output": "x"},
            ],
        }
    )
    with pytest.raises(InvalidRequestError) as refused:
        chat_request(body, [], input_items(body), ResponseDraft())
    assert refused.value.param == "input[1].call_id"
