"""Trimming a session's history to a model's context window (spine.sessions.history)."""

from __future__ import annotations

from typing import Any

from spine.registry.schema import ModelEntry
from spine.schemas.openai import ChatCompletionRequest, ChatMessage
from spine.sessions.history import (
    from_chat_message,
    output_reservation,
    split_turns,
    to_chat_message,
    trim_history,
)
from spine.storage.sessions import NewMessage


def entry(window: int, max_output: int | None = None) -> ModelEntry:
    fields: dict[str, Any] = {
        "id": "m",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "context_window": window,
    }
    if max_output is not None:
        fields["max_output_tokens"] = max_output
    return ModelEntry.model_validate(fields)


def msg(role: str, text: str, **extra: Any) -> ChatMessage:
    return ChatMessage.model_validate({"role": role, "content": text, **extra})


def request(**extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "new"}], **extra}
    )


def conversation(turns: int) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for i in range(turns):
        out += [msg("user", f"question {i} " + "word " * 20), msg("assistant", "answer " * 20)]
    return out


def test_turns_start_at_user_messages_and_keep_tool_results() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    history = [
        msg("assistant", "orphan reply"),  # its question was not loaded
        msg("user", "q1"),
        ChatMessage.model_validate({"role": "assistant", "tool_calls": [call]}),
        msg("tool", "42", tool_call_id="c1"),
        msg("assistant", "it is 42"),
        msg("user", "q2"),
    ]
    turns, orphans = split_turns(history)
    assert orphans == 1
    assert [[m.role for m in t] for t in turns] == [
        ["user", "assistant", "tool", "assistant"],
        ["user"],
    ]


def test_output_reservation_order() -> None:
    assert output_reservation(request(max_tokens=7), entry(1000, 100)) == 7
    assert output_reservation(request(max_completion_tokens=9), entry(1000, 100)) == 9
    assert output_reservation(request(), entry(1000, 100)) == 100
    assert output_reservation(request(), entry(1000)) == 250


def test_everything_is_kept_when_it_fits() -> None:
    history = conversation(3)
    trimmed = trim_history(
        history, fixed=request().messages, request=request(), entry=entry(10_000)
    )
    assert trimmed.history == history
    assert (trimmed.turns_kept, trimmed.turns_dropped) == (3, 0)


def test_oldest_whole_turns_are_dropped_first() -> None:
    history = conversation(6)
    # Each turn is ~50 tokens; 200 tokens of window less 50 of output leave room for 2.
    trimmed = trim_history(
        history, fixed=request().messages, request=request(), entry=entry(200, 50)
    )
    assert 0 < trimmed.turns_kept < 6
    assert trimmed.turns_kept + trimmed.turns_dropped == 6
    kept = trimmed.turns_kept
    assert trimmed.history == history[-2 * kept :]


def test_nothing_fits_beside_a_huge_new_message() -> None:
    big = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "word " * 500}]}
    )
    trimmed = trim_history(conversation(2), fixed=big.messages, request=big, entry=entry(300, 50))
    assert trimmed.history == [] and trimmed.turns_dropped == 2


def test_stored_messages_round_trip() -> None:
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
    ]
    original = ChatMessage.model_validate({"role": "user", "content": parts, "name": "ann"})
    stored = from_chat_message(original, tokens=3)
    assert stored.content == "look" and stored.parts == parts
    assert to_chat_message(stored) == original
    assert to_chat_message(NewMessage(role="assistant", content=None)).content == ""
