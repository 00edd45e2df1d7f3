"""A non-Claude model's chat answer in the Messages API's shape: the whole message,
or its stream as Anthropic's events.

The stream is where gateways break Anthropic clients (Claude Code among them), so
its rules are kept strictly:
- `message_start` first, then each content block opened by `content_block_start`,
  filled by deltas of ITS type (`thinking_delta` only in a thinking block,
  `text_delta` only in a text block, `input_json_delta` only in a tool_use block),
  closed by `content_block_stop` before the next block opens;
- `message_delta` with the stop reason and the usage, then `message_stop`.
Input tokens are known only when the provider's stream ends, so `message_start`
reports 0 and `message_delta` the real counts (the SDKs take them from there).
"""

from __future__ import annotations

import json
from typing import Any

from spine.providers.convert import new_id
from spine.schemas.anthropic import AnthropicMessage, usage_to_anthropic
from spine.schemas.openai import ChatCompletion, Usage

Event = dict[str, Any]

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None) -> str:
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is; arguments that
    are not a JSON object are kept whole under "arguments" rather than lost."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def to_message(answer: ChatCompletion, model: str) -> AnthropicMessage:
    choice = answer.choices[0]
    message = choice.message
    content: list[dict[str, Any]] = []
    if message.reasoning_content:
        content.append({"type": "thinking", "thinking": message.reasoning_content, "signature": ""})
    if message.content or message.refusal:
        content.append({"type": "text", "text": message.content or message.refusal or ""})
    for call in message.tool_calls or []:
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": tool_input(call.function.arguments),
            }
        )
    return AnthropicMessage(
        id=new_id("msg_"),
        model=model,
        content=content,
        stop_reason=stop_reason(choice.finish_reason),
        stop_sequence=None,
        usage=usage_to_anthropic(answer.usage),
    )


class EventsFromChunks:
    """OpenAI chat chunks in, Anthropic stream events out (see the module's rules)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.block_index = -1
        self.block_type: str | None = None
        # OpenAI tool-call index -> its block's index, for argument deltas.
        self.tool_blocks: dict[int, int] = {}
        self.finish_reason: str | None = None
        self.usage = Usage()

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events = [] if self.started else [self._message_start()]
        self.started = True
        if chunk.get("usage"):
            self.usage = Usage.model_validate(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # the Messages API has one answer
            delta = choice.get("delta") or {}
            if reasoning := delta.get("reasoning_content"):
                events += self._into(
                    "thinking", {"type": "thinking", "thinking": "", "signature": ""}
                )
                events.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            if text := (delta.get("content") or delta.get("refusal")):
                events += self._into("text", {"type": "text", "text": ""})
                events.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        """The closing events, once the provider's stream has ended."""
        events = [] if self.started else [self._message_start()]
        self.started = True
        events += self._close()
        usage = usage_to_anthropic(self.usage)
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish_reason), "stop_sequence": None},
                "usage": usage,
            }
        )
        events.append({"type": "message_stop"})
        return events

    # --- internals ----------------------------------------------------------------------

    def _message_start(self) -> Event:
        return {
            "type": "message_start",
            "message": {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        }

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        index = call.get("index", 0)
        function = call.get("function") or {}
        events: list[Event] = []
        if index not in self.tool_blocks:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu_"),
                "name": function.get("name") or "",
                "input": {},
            }
            events += self._open("tool_use", block)
            self.tool_blocks[index] = self.block_index
        if arguments := function.get("arguments"):
            if self.tool_blocks[index] != self.block_index:
                # A call's arguments after another block opened: Anthropic's stream
                # cannot reopen a block, and OpenAI-speaking servers send calls one
                # after another, so this is a server out of order.
                return events
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return events

    def _into(self, kind: str, block: dict[str, Any]) -> list[Event]:
        """Open a block of `kind` unless one is open already."""
        return [] if self.block_type == kind else self._open(kind, block)

    def _open(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self.block_index += 1
        self.block_type = kind
        events.append(
            {"type": "content_block_start", "index": self.block_index, "content_block": block}
        )
        return events

    def _close(self) -> list[Event]:
        if self.block_type is None:
            return []
        self.block_type = None
        return [{"type": "content_block_stop", "index": self.block_index}]

    def _delta(self, delta: dict[str, Any]) -> Event:
        return {"type": "content_block_delta", "index": self.block_index, "delta": delta}
