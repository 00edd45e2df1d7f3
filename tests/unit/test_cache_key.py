"""The response cache's pure parts: the key, when a request is cacheable, the request
headers, and a cached answer replayed as stream chunks and assembled back."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from spine.api.cache_headers import cache_control
from spine.auth.principal import Principal
from spine.errors import InvalidRequestError
from spine.pipeline.cache import (
    CacheControl,
    CachePlan,
    cache_scope,
    is_complete,
    is_deterministic,
    request_key,
)
from spine.pipeline.cache_replay import StreamCapture, answer_chunks
from spine.schemas.openai import ChatCompletion, ChatCompletionRequest, TextCompletion, Usage


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def key(request: ChatCompletionRequest, scope: str = "tenant:a") -> bytes:
    return request_key(scope, "chat.completions", request)


def test_key_ignores_fields_that_do_not_change_the_answer() -> None:
    base = key(chat(temperature=0))
    assert len(base) == 32
    same = chat(
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
        user="u",
        metadata={"k": "v"},
        session_id="s",
        store=True,
    )
    assert key(same) == base
    assert key(chat(temperature=0, seed=None)) == base  # an explicit null is no value


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.1},
        {"max_tokens": 5},
        {"seed": 1},
        {"stop": "x"},
        {"model": "other"},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"response_format": {"type": "json_object"}},
    ],
)
def test_key_changes_with_what_changes_the_answer(change: dict[str, Any]) -> None:
    assert key(chat(**{"temperature": 0, **change})) != key(chat(temperature=0))


def test_key_is_scoped_and_per_endpoint() -> None:
    request = chat(temperature=0)
    assert key(request, "tenant:a") != key(request, "tenant:b")
    assert request_key("tenant:a", "completions", request) != key(request, "tenant:a")


def test_scope_is_the_tenant_else_the_subject() -> None:
    assert cache_scope(Principal("alice", "api_key", tenant="acme")) == "tenant:acme"
    assert cache_scope(Principal("alice", "api_key")) == "subject:alice"
    # A subject named like a tenant cannot reach that tenant's rows
    assert cache_scope(Principal("acme", "jwt")) != cache_scope(
        Principal("x", "jwt", tenant="acme")
    )


def test_deterministic_means_temperature_zero_or_a_seed() -> None:
    assert is_deterministic(chat(temperature=0))
    assert is_deterministic(chat(temperature=1, seed=3))
    assert not is_deterministic(chat(temperature=0.2))
    assert not is_deterministic(chat())


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, CacheControl()),
        ({"x-spine-cache": "force"}, CacheControl(force=True)),
        ({"x-spine-cache": " AUTO "}, CacheControl()),
        ({"cache-control": "no-cache"}, CacheControl(read=False)),
        ({"cache-control": "max-age=0, no-store"}, CacheControl(read=False, write=False)),
        ({"cache-control": "private"}, CacheControl()),
    ],
)
def test_cache_headers(headers: dict[str, str], expected: CacheControl) -> None:
    assert cache_control(request_with(headers)) == expected


def test_unknown_cache_mode_is_refused_naming_the_header() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        cache_control(request_with({"x-spine-cache": "yes"}))
    assert caught.value.param == "x-spine-cache"


# --- replay and capture -------------------------------------------------------------------


def plan(endpoint: str) -> CachePlan:
    return CachePlan(b"k" * 32, "tenant:a", endpoint, 60, read=True, write=True)


def chat_answer(**message: Any) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "created": 1700000000,
            "model": "gpt-test",
            "choices": [{"message": message, "finish_reason": message.pop("finish", "stop")}],
            "usage": Usage.of(5, 300).model_dump(),
        }
    )


def round_trip(answer: ChatCompletion | TextCompletion, endpoint: str) -> Any:
    capture = StreamCapture(None, plan(endpoint))  # type: ignore[arg-type]
    for chunk in answer_chunks(answer):
        capture.add(chunk)
    return capture.answer(answer.model, answer.usage)


def test_long_answer_replays_in_several_chunks_and_assembles_back() -> None:
    answer = chat_answer(content="word " * 120)
    chunks = answer_chunks(answer)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 300
    assert {c["id"] for c in chunks} == {"chatcmpl-1"}
    assert round_trip(answer, "chat.completions") == answer


def test_tool_calls_and_refusals_survive_the_round_trip() -> None:
    answer = chat_answer(
        content=None,
        tool_calls=[
            {"id": "c1", "function": {"name": "a", "arguments": '{"x": 1}'}},
            {"id": "c2", "function": {"name": "b", "arguments": "{}"}},
        ],
        finish="tool_calls",
    )
    assert round_trip(answer, "chat.completions") == answer
    refused = chat_answer(content=None, refusal="I can't help with that.")
    assert round_trip(refused, "chat.completions") == refused


def test_text_completion_round_trip() -> None:
    answer = TextCompletion.model_validate(
        {
            "id": "cmpl-1",
            "created": 1700000000,
            "model": "gpt-test",
            "choices": [{"text": "echo: hi", "finish_reason": "length"}],
            "usage": Usage.of(2, 3).model_dump(),
        }
    )
    assert {c["object"] for c in answer_chunks(answer)} == {"text_completion"}
    assert round_trip(answer, "completions") == answer


def test_unfinished_stream_is_not_assembled() -> None:
    capture = StreamCapture(None, plan("chat.completions"))  # type: ignore[arg-type]
    capture.add({"id": "x", "choices": [{"index": 0, "delta": {"content": "par"}}]})
    assert capture.answer("gpt-test", Usage.of(1, 1)) is None


def test_only_complete_answers_are_kept() -> None:
    assert is_complete(chat_answer(content="ok"))
    assert is_complete(chat_answer(content="ok", finish="length"))
    assert not is_complete(chat_answer(content="", finish="content_filter"))
