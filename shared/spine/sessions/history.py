"""A session's history as chat messages, and trimming it to a model's context window.

Trimming rule: the prompt is system prompt + history + the request's new messages.
The system prompt and the new messages are always kept; history is kept by whole
turns (a user message and every assistant or tool message after it), newest first,
while the prompt fits in `context_window - output reservation`. The first turn that
does not fit is dropped with every older one: the model never sees a gap in the
middle of the conversation. Counts use `spine.pipeline.tokens` at the upper end of its
error bars, so an estimate (non-OpenAI tokenizers) errs on the side of fitting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spine.pipeline.tokens import count_prompt
from spine.registry.schema import ModelEntry
from spine.schemas.openai import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
)
from spine.storage.sessions import NewMessage

SYSTEM_ROLES = ("system", "developer")
# Without max_tokens anywhere (request, profile, model defaults) and no
# max_output_tokens in models.yaml, this share of the window is kept for the reply.
DEFAULT_OUTPUT_SHARE = 4


@dataclass(frozen=True)
class Trimmed:
    history: list[ChatMessage]  # the kept turns, oldest first
    turns_kept: int
    turns_dropped: int


def to_chat_message(stored: NewMessage) -> ChatMessage:
    """A stored message as the model sees it again."""
    content: Any = stored.parts if stored.parts is not None else stored.content
    if content is None and not (stored.role == "assistant" and stored.tool_calls):
        content = ""
    return ChatMessage.model_validate(
        {
            "role": stored.role,
            "content": content,
            "name": stored.name,
            "tool_calls": stored.tool_calls,
            "tool_call_id": stored.tool_call_id,
        }
    )


def from_chat_message(message: ChatMessage, *, tokens: int | None) -> NewMessage:
    parts = None
    if isinstance(message.content, list):
        parts = [p.model_dump(mode="json", exclude_none=True) for p in message.content]
    return NewMessage(
        role=message.role,
        content=message.text() if message.content is not None else None,
        parts=parts,
        name=message.name,
        tool_calls=_dump_calls(message.tool_calls),
        tool_call_id=message.tool_call_id,
        tokens=tokens,
    )


def from_reply(message: AssistantMessage, *, tokens: int | None) -> NewMessage:
    """The model's answer as a stored message. A reply cannot be refused as bad input,
    so characters Postgres text cannot hold are replaced, not rejected."""
    content = message.content if message.content is not None else message.refusal
    if content is None and not message.tool_calls:
        content = ""
    return NewMessage(
        role="assistant",
        content=content.replace("\x00", "\ufffd") if content is not None else None,
        tool_calls=_dump_calls(message.tool_calls),
        tokens=tokens,
    )


def _dump_calls(calls: Sequence[Any] | None) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    return [call.model_dump(mode="json") for call in calls]


def split_turns(history: Sequence[ChatMessage]) -> tuple[list[list[ChatMessage]], int]:
    """Whole turns, oldest first, and how many leading messages belong to a turn whose
    user message was not loaded (they are dropped with it)."""
    turns: list[list[ChatMessage]] = []
    orphans = 0
    for message in history:
        if message.role == "user":
            turns.append([message])
        elif turns:
            turns[-1].append(message)
        else:
            orphans += 1
    return turns, orphans


def output_reservation(request: ChatCompletionRequest, entry: ModelEntry) -> int:
    """Tokens kept free for the reply: the request's limit (after profile and model
    defaults), else the model's max_output_tokens, else a quarter of the window."""
    limit = request.output_limit()
    if limit is not None:
        return limit
    if entry.max_output_tokens is not None:
        return entry.max_output_tokens
    return entry.context_window // DEFAULT_OUTPUT_SHARE


def trim_history(
    history: Sequence[ChatMessage],
    *,
    fixed: Sequence[ChatMessage],
    request: ChatCompletionRequest,
    entry: ModelEntry,
) -> Trimmed:
    """Keep the newest whole turns of `history` that fit beside `fixed` (the system
    prompt and the new messages, always sent) in the model's window."""
    turns, _ = split_turns(history)
    budget = entry.context_window - output_reservation(request, entry)
    used = count_prompt(entry, messages=list(fixed), tools=request.tools).high
    kept: list[list[ChatMessage]] = []
    for turn in reversed(turns):
        # Each turn counted alone includes the reply priming once more: a few
        # tokens too many per turn, on the safe side.
        cost = count_prompt(entry, messages=turn).high
        if used + cost > budget:
            break
        used += cost
        kept.append(turn)
    kept.reverse()
    return Trimmed(
        history=[message for turn in kept for message in turn],
        turns_kept=len(kept),
        turns_dropped=len(turns) - len(kept),
    )
