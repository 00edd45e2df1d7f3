"""A streamed chat answer in a session: relays the chunks of a `CompletionStream`,
gathers the reply as it streams, and stores the turn only when the stream finished
normally. An upstream failure mid-stream or a client that went away stores nothing;
the turn is stored before `[DONE]` is sent, so a client that saw `[DONE]` finds it in
the session.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from spine.errors import SpineError
from spine.observability import get_logger
from spine.pipeline.stream import Chunk, CompletionStream, WrappedStream
from spine.schemas.openai import AssistantMessage
from spine.sessions.service import SessionTurn, store_turn

logger = get_logger(__name__)


class SessionStream(WrappedStream):
    """A session's chat stream, the turn stored at its end."""

    def __init__(self, inner: CompletionStream, turn: SessionTurn) -> None:
        super().__init__(inner)
        self.turn = turn
        self._content: list[str] = []
        self._refusal: list[str] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}
        self.stored = False

    async def _relay_chunks(self) -> AsyncGenerator[Chunk, None]:
        # An upstream failure is raised by the inner relay (after its usage row), and
        # a cancelled relay (client gone) never reaches the end: neither stores.
        async for chunk in self.inner.chunks():
            self._gather(chunk)
            yield chunk
        await self._store()

    def _gather(self, chunk: Chunk) -> None:
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._content.append(str(delta["content"]))
            if delta.get("refusal"):
                self._refusal.append(str(delta["refusal"]))
            for call in delta.get("tool_calls") or []:
                self._merge_call(call)

    def _merge_call(self, call: dict[str, Any]) -> None:
        # OpenAI streams a tool call as pieces under one index: the id and name
        # first, then the arguments a few characters at a time.
        slot = self._tool_calls.setdefault(
            int(call.get("index", 0)),
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id"):
            slot["id"] = call["id"]
        function = call.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

    async def _store(self) -> None:
        calls = [self._tool_calls[i] for i in sorted(self._tool_calls)]
        reply = AssistantMessage.model_validate(
            {
                "content": "".join(self._content) if self._content or not calls else None,
                "refusal": "".join(self._refusal) or None,
                "tool_calls": calls or None,
            }
        )
        usage = self.inner.result.usage
        try:
            await store_turn(
                self.inner.ctx.database,
                self.turn,
                reply,
                completion_tokens=usage.completion_tokens if usage.total_tokens else None,
                request_id=self.inner.ctx.request_id,
            )
        except SpineError:
            raise
        except Exception as exc:
            logger.exception(
                "session turn store failed", extra={"session_id": str(self.turn.session.id)}
            )
            raise SpineError("The answer streamed but could not be stored in the session.") from exc
        self.stored = True
