"""A streamed chat answer as the Responses API's typed events.

`ResponseEvents` reads OpenAI chat chunks (what every provider adapter streams) and
writes the events OpenAI sends, each with its `sequence_number`: `response.created` and
`response.in_progress` with the first chunk; then for each output item
`response.output_item.added`, its content (`response.content_part.added`, text, refusal
or reasoning deltas and their `.done`, or `response.function_call_arguments.delta` /
`.done`) and `response.output_item.done`; at the end `response.completed` (or
`response.incomplete` when the output limit or a filter cut the answer) with the usage
of the provider's last chunk. One item is open at a time: a delta of another kind
closes it.

`ResponsesMeter` is what the stream relay (`spine.pipeline.stream`) reads of those
events: the usage at the end, the bytes generated so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spine.pipeline.responses_answer import (
    ResponseDraft,
    function_call_item,
    item_status,
    message_item,
    new_item_id,
    reasoning_item,
    refusal_part,
    status_of,
    text_part,
)
from spine.pipeline.stream import StreamMeter
from spine.schemas.openai import Usage
from spine.schemas.response_object import Item, ResponseStatus, ResponseUsage

Event = dict[str, Any]
Chunk = dict[str, Any]

# The events whose `delta` is generated text (what a cut stream is billed from).
_TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.function_call_arguments.delta",
    }
)
_ENDS = frozenset({"response.completed", "response.incomplete"})


@dataclass
class _Open:
    """The output item being streamed: its kind, where it is, what it holds so far."""

    kind: str  # 'message' | 'reasoning' | 'function_call'
    item_id: str
    output_index: int
    # message: the parts so far, the last one open; reasoning: one text part.
    parts: list[Item] = field(default_factory=list)
    # function_call: the tool call's index in the chat chunks, its id, name, arguments.
    tool_index: int = -1
    call_id: str = ""
    name: str = ""
    arguments: str = ""


class ResponseEvents:
    def __init__(self, draft: ResponseDraft, model: str) -> None:
        self.draft = draft
        self.model = model
        self.sequence = 0
        self.output: list[Item] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._open: _Open | None = None
        self._started = False

    # --- the stream's life -------------------------------------------------------------

    def feed(self, chunk: Chunk) -> list[Event]:
        events: list[Event] = []
        if not self._started:
            self._started = True
            opening = self.draft.response(self.model, "in_progress", []).model_dump(mode="json")
            events += [
                self._event("response.created", response=opening),
                self._event("response.in_progress", response=opening),
            ]
        if chunk.get("usage"):
            self.usage = Usage.model_validate(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # Spine asks for one choice
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                events += self._reasoning(str(delta["reasoning_content"]))
            if delta.get("content"):
                events += self._message_text("output_text", str(delta["content"]))
            if delta.get("refusal"):
                events += self._message_text("refusal", str(delta["refusal"]))
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return events

    def closing(self) -> list[Event]:
        """The last events: the open item closed, then the finished response."""
        status, incomplete = status_of(self.finish_reason)
        events = self._close(status)
        if not any(item["type"] in ("message", "function_call") for item in self.output):
            # An empty answer is still a message, as a whole answer's would be.
            events += self._message_text("output_text", "")
            events += self._close(status)
        response = self.draft.response(
            self.model, status, self.output, usage=self.usage, incomplete=incomplete
        )
        end = "response.completed" if status == "completed" else "response.incomplete"
        return [*events, self._event(end, response=response.model_dump(mode="json"))]

    # --- items -------------------------------------------------------------------------

    def _reasoning(self, text: str) -> list[Event]:
        events: list[Event] = []
        current = self._open
        if current is None or current.kind != "reasoning":
            events += self._close("completed")
            item = reasoning_item(new_item_id("rs_"), "", "in_progress")
            current = self._start(events, "reasoning", item)
            current.parts.append({"type": "reasoning_text", "text": ""})
            events.append(self._part_added(current, {"type": "reasoning_text", "text": ""}))
        current.parts[0]["text"] += text
        events.append(self._delta("response.reasoning_text.delta", current, text))
        return events

    def _message_text(self, part_type: str, text: str) -> list[Event]:
        events: list[Event] = []
        current = self._open
        if current is None or current.kind != "message":
            events += self._close("completed")
            item = message_item(new_item_id("msg_"), [], "in_progress")
            current = self._start(events, "message", item)
        if not current.parts or current.parts[-1]["type"] != part_type:
            if current.parts:
                events += self._part_done(current)
            empty = text_part("") if part_type == "output_text" else refusal_part("")
            current.parts.append(empty)
            events.append(self._part_added(current, dict(empty)))
        key = "text" if part_type == "output_text" else "refusal"
        current.parts[-1][key] += text
        if text:
            name = "response.output_text.delta" if key == "text" else "response.refusal.delta"
            events.append(self._delta(name, current, text))
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        current = self._open
        if current is None or current.kind != "function_call" or current.tool_index != index:
            events += self._close("completed")
            item_id = new_item_id("fc_")
            call_id = str(call.get("id") or new_item_id("call_"))
            name = str(function.get("name") or "")
            item = function_call_item(item_id, call_id, name, "", "in_progress")
            current = self._start(events, "function_call", item)
            current.tool_index, current.call_id, current.name = index, call_id, name
        arguments = str(function.get("arguments") or "")
        if arguments:
            current.arguments += arguments
            events.append(self._delta("response.function_call_arguments.delta", current, arguments))
        return events

    # --- opening and closing items -----------------------------------------------------

    def _start(self, events: list[Event], kind: str, item: Item) -> _Open:
        """Open `item` as the next output item; its `output_item.added` joins `events`."""
        opened = _Open(kind, item["id"], len(self.output))
        self._open = opened
        events.append(
            self._event("response.output_item.added", output_index=opened.output_index, item=item)
        )
        return opened

    def _close(self, status: ResponseStatus) -> list[Event]:
        current, self._open = self._open, None
        if current is None:
            return []
        events: list[Event] = []
        done_status = item_status(status)
        if current.kind == "function_call":
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=current.item_id,
                    output_index=current.output_index,
                    name=current.name,
                    arguments=current.arguments,
                )
            )
            item = function_call_item(
                current.item_id, current.call_id, current.name, current.arguments
            )
        elif current.kind == "reasoning":
            events += self._part_done(current)
            item = reasoning_item(current.item_id, current.parts[0]["text"])
        else:
            events += self._part_done(current)
            item = message_item(current.item_id, current.parts, done_status)
        self.output.append(item)
        events.append(
            self._event("response.output_item.done", output_index=current.output_index, item=item)
        )
        return events

    def _part_added(self, current: _Open, part: Item) -> Event:
        return self._event(
            "response.content_part.added",
            item_id=current.item_id,
            output_index=current.output_index,
            content_index=len(current.parts) - 1,
            part=part,
        )

    def _part_done(self, current: _Open) -> list[Event]:
        part = current.parts[-1]
        where = {
            "item_id": current.item_id,
            "output_index": current.output_index,
            "content_index": len(current.parts) - 1,
        }
        if part["type"] == "output_text":
            done = self._event("response.output_text.done", **where, text=part["text"], logprobs=[])
        elif part["type"] == "refusal":
            done = self._event("response.refusal.done", **where, refusal=part["refusal"])
        else:
            done = self._event("response.reasoning_text.done", **where, text=part["text"])
        return [done, self._event("response.content_part.done", **where, part=dict(part))]

    def _delta(self, name: str, current: _Open, text: str) -> Event:
        where: dict[str, Any] = {"item_id": current.item_id, "output_index": current.output_index}
        if name != "response.function_call_arguments.delta":
            where["content_index"] = len(current.parts) - 1
        if name == "response.output_text.delta":
            where["logprobs"] = []
        return self._event(name, **where, delta=text)

    def _event(self, event_type: str, /, **fields: Any) -> Event:
        event = {"type": event_type, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event


class ResponsesMeter(StreamMeter):
    """Reads a Responses stream's usage from its last event and counts the text its
    deltas carry; the events reach the client as they are."""

    def __init__(self, model: str) -> None:
        super().__init__(model, include_usage=True)

    def shape(self, chunk: Chunk) -> Chunk | None:
        kind = chunk.get("type")
        if kind in _TEXT_DELTAS:
            self.streamed_bytes += len(str(chunk.get("delta") or "").encode())
        elif kind in _ENDS:
            usage = (chunk.get("response") or {}).get("usage")
            if usage:
                self.usage = ResponseUsage.model_validate(usage).as_chat_usage()
        return chunk
