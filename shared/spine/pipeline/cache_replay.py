"""Streams and the response cache: a cached answer replayed as stream chunks, and a
streamed answer assembled so it can be kept.

Both sides use OpenAI's stream shape (`spine.providers.convert.ChunkWriter`): a role
chunk, content chunks, tool-call chunks, a finishing chunk, then a usage chunk with
no choices (which `CompletionStream` drops unless the client asked for usage).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from spine.observability import get_logger
from spine.pipeline.cache import Answer, CachePlan, store_answer
from spine.providers.convert import ChunkWriter
from spine.schemas.openai import ChatCompletion, TextCompletion, Usage

if TYPE_CHECKING:
    from spine.pipeline.context import CallContext, CallResult

logger = get_logger(__name__)

Chunk = dict[str, Any]

# Characters of text per replayed content chunk: small answers go in one chunk, long
# ones in a few hundred at most.
REPLAY_PIECE_CHARS = 256


async def replay_chunks(answer: Answer) -> AsyncGenerator[Chunk, None]:
    for chunk in answer_chunks(answer):
        yield chunk


def answer_chunks(answer: Answer) -> list[Chunk]:
    """The stream chunks of a whole answer (one choice: Spine serves n=1)."""
    if isinstance(answer, ChatCompletion):
        return _chat_chunks(answer)
    return _text_chunks(answer)


def _chat_chunks(answer: ChatCompletion) -> list[Chunk]:
    writer = ChunkWriter(
        model=answer.model,
        id=answer.id,
        created=answer.created,
        system_fingerprint=answer.system_fingerprint,
    )
    choice = answer.choices[0]
    message = choice.message
    chunks = [writer.role()]
    chunks += [writer.content(piece) for piece in _pieces(message.content or "")]
    if message.refusal:
        chunks.append(writer.delta({"refusal": message.refusal}))
    for index, call in enumerate(message.tool_calls or []):
        chunks.append(
            writer.tool_call(
                index, call_id=call.id, name=call.function.name, arguments=call.function.arguments
            )
        )
    chunks.append(writer.finish(choice.finish_reason or "stop"))
    chunks.append(writer.usage(answer.usage))
    return chunks


def _text_chunks(answer: TextCompletion) -> list[Chunk]:
    def chunk(choices: list[dict[str, Any]], usage: Usage | None = None) -> Chunk:
        return {
            "id": answer.id,
            "object": "text_completion",
            "created": answer.created,
            "model": answer.model,
            "system_fingerprint": answer.system_fingerprint,
            "choices": choices,
            "usage": usage.model_dump() if usage is not None else None,
        }

    def text(value: str, finish: str | None = None) -> Chunk:
        return chunk([{"index": 0, "text": value, "logprobs": None, "finish_reason": finish}])

    choice = answer.choices[0]
    chunks = [text(piece) for piece in _pieces(choice.text)]
    chunks.append(text("", choice.finish_reason or "stop"))
    chunks.append(chunk([], answer.usage))
    return chunks


def _pieces(text: str) -> Iterator[str]:
    for start in range(0, len(text), REPLAY_PIECE_CHARS):
        yield text[start : start + REPLAY_PIECE_CHARS]


@dataclass
class _ToolCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamCapture:
    """Assembles the answer of a streamed miss; `store` keeps it once the stream has
    finished normally with the provider's usage (a cut, failed or estimated stream is
    never kept)."""

    def __init__(self, ctx: CallContext, plan: CachePlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self._id = ""
        self._created: int | None = None
        self._fingerprint: str | None = None
        self._text: list[str] = []
        self._refusal: list[str] = []
        self._tool_calls: dict[int, _ToolCall] = {}
        self._finish_reason: str | None = None
        self._unusable = False

    def add(self, chunk: Chunk) -> None:
        self._id = self._id or str(chunk.get("id") or "")
        self._created = self._created or chunk.get("created")
        self._fingerprint = self._fingerprint or chunk.get("system_fingerprint")
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0 or choice.get("logprobs"):
                self._unusable = True  # several choices or logprobs: not replayable
            if "text" in choice:
                self._text.append(str(choice.get("text") or ""))
            else:
                self._add_delta(choice.get("delta") or {})
            if choice.get("finish_reason"):
                self._finish_reason = str(choice["finish_reason"])

    def _add_delta(self, delta: dict[str, Any]) -> None:
        self._text.append(str(delta.get("content") or ""))
        self._refusal.append(str(delta.get("refusal") or ""))
        for call in delta.get("tool_calls") or []:
            slot = self._tool_calls.setdefault(int(call.get("index", 0)), _ToolCall())
            slot.id = slot.id or call.get("id")
            function = call.get("function") or {}
            slot.name = slot.name or str(function.get("name") or "")
            slot.arguments.append(str(function.get("arguments") or ""))

    def answer(self, model: str, usage: Usage) -> Answer | None:
        """The whole answer in its non-streamed shape; None when it cannot be."""
        if self._unusable or self._finish_reason is None:
            return None
        common: dict[str, Any] = {
            "id": self._id,
            "model": model,
            "usage": usage,
            "system_fingerprint": self._fingerprint,
        }
        if self._created is not None:
            common["created"] = self._created
        text = "".join(self._text)
        try:
            if self.plan.endpoint == "completions":
                choice: dict[str, Any] = {"text": text, "finish_reason": self._finish_reason}
                return TextCompletion.model_validate({**common, "choices": [choice]})
            message: dict[str, Any] = {
                "content": text or None,
                "refusal": "".join(self._refusal) or None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "function": {"name": call.name, "arguments": "".join(call.arguments)},
                    }
                    for _, call in sorted(self._tool_calls.items())
                ]
                or None,
            }
            choice = {"message": message, "finish_reason": self._finish_reason}
            return ChatCompletion.model_validate({**common, "choices": [choice]})
        except ValidationError:
            logger.warning("streamed answer not cached: unexpected shape", extra={"model": model})
            return None

    async def store(self, result: CallResult, usage: Usage | None) -> None:
        if usage is None:
            return  # the provider never reported usage: the stream may be incomplete
        answer = self.answer(result.resolved.entry.id, usage)
        if answer is None:
            return
        await store_answer(
            self.ctx,
            self.plan,
            answer,
            provider=result.target.provider.value,
            deployment=result.target.deployment,
        )
