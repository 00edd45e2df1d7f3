"""A streamed Responses call: relays the events of a `CompletionStream` (written by
`spine.pipeline.responses_events`), stores the response before its last event
(`response.completed` or `response.incomplete`) is sent, so a client that saw it can
name it in `previous_response_id` at once, and writes a failure after the stream
started as the Responses API's `error` event. A failure mid-stream or a client that
went away stores nothing.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from spine.errors import SpineError
from spine.observability import get_logger
from spine.pipeline import run
from spine.pipeline.context import CallContext
from spine.pipeline.responses_kind import RESPONSES
from spine.pipeline.stream import Chunk, CompletionStream, WrappedStream
from spine.responses.service import ResponsesCall, save
from spine.schemas.response_object import ResponseObject

logger = get_logger(__name__)

_ENDS = frozenset({"response.completed", "response.incomplete"})


async def open_stream(call: ResponsesCall, ctx: CallContext) -> ResponsesStream:
    """The call's stream, opened to its first event (a failure up to there is retried
    or falls back, and answers as an ordinary error)."""
    inner = await run.stream(RESPONSES, call.request, ctx)
    inner.result.dropped_params = call.dropped(inner.result.dropped_params)
    return ResponsesStream(inner, call)


class ResponsesStream(WrappedStream):
    """The Responses API's events, the response stored before its last one."""

    def __init__(self, inner: CompletionStream, call: ResponsesCall) -> None:
        super().__init__(inner)
        self.call = call
        self._next_sequence = 0

    def error_event(self, exc: SpineError) -> dict[str, Any]:
        """A failure after the stream started, as the Responses API's `error` event."""
        return {
            "type": "error",
            "code": exc.code or exc.error_type,
            "message": exc.message,
            "param": exc.param,
            "sequence_number": self._next_sequence,
        }

    async def _relay_chunks(self) -> AsyncGenerator[Chunk, None]:
        async for event in self.inner.chunks():
            self._next_sequence = int(event.get("sequence_number", -1)) + 1
            if event.get("type") in _ENDS and self.call.store:
                await self._store(event["response"])
            yield event

    async def _store(self, response: dict[str, Any]) -> None:
        try:
            await save(self.inner.ctx, self.call, ResponseObject.model_validate(response))
        except SpineError:
            raise
        except Exception as exc:
            logger.exception("response store failed", extra={"response_id": self.call.draft.id})
            raise SpineError("The answer streamed but could not be stored.") from exc
