"""A text capability (summarize, rewrite, translate) with `stream: true`.

The model's text is relayed as it is generated, as `delta` events; when the model is
done its whole answer is checked exactly as the JSON route checks it
(`spine.capabilities.run.settle`: parse, the capability's checks, one repair call),
and one `result` event carries the response the JSON route would have sent, usage
included. So a client may show the text early and still gets the checked result; an
answer that stays invalid, or an upstream failure mid-stream, ends the stream with an
`error` event instead (the status was sent with the first event).

Summarize answers JSON: its deltas are that JSON as the model writes it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from pydantic import BaseModel

from spine.capabilities import run as capability
from spine.capabilities.run import Answered, Prepared
from spine.pipeline import run
from spine.pipeline.context import CallContext
from spine.pipeline.stream import Chunk, CompletionStream, WrappedStream
from spine.schemas.openai import AssistantMessage, ChatCompletion, Choice, StreamOptions


async def open_stream(prepared: Prepared, ctx: CallContext) -> CompletionStream:
    """The capability's chat request as a stream, with the provider's usage asked for
    (the result event reports it), opened to its first chunk."""
    request = prepared.request.model_copy(
        update={"stream": True, "stream_options": StreamOptions(include_usage=True)}
    )
    run_ctx = capability.call_context(prepared, ctx)
    return await run.stream(capability.capability_kind(prepared.name), request, run_ctx)


class CapabilityStream(WrappedStream):
    """`delta` events while the model writes, then one `result` event."""

    def __init__(
        self,
        inner: CompletionStream,
        prepared: Prepared,
        *,
        check: Callable[[Any], Any],
        respond: Callable[[Answered], BaseModel],
    ) -> None:
        super().__init__(inner)
        self.prepared = prepared
        self._check = check
        self._respond = respond
        self._text: list[str] = []
        self._refusal: list[str] = []

    async def _relay_chunks(self) -> AsyncGenerator[Chunk, None]:
        # An upstream failure is raised by the inner relay after its usage row; the
        # response writes it as the error event.
        async for chunk in self.inner.chunks():
            if text := self._gather(chunk):
                yield {"type": "delta", "text": text}
        answered = await capability.settle(
            self.prepared,
            # A repair call runs in the stream's context, under its own request id.
            self.inner.ctx,
            self._completion(),
            self.inner.result,
            self._check,
        )
        result = self._respond(answered).model_dump(mode="json")
        yield {"type": "result", "result": result}

    def _gather(self, chunk: Chunk) -> str:
        text = ""
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("refusal"):
                self._refusal.append(str(delta["refusal"]))
            if delta.get("content"):
                text += str(delta["content"])
        if text:
            self._text.append(text)
        return text

    def _completion(self) -> ChatCompletion:
        """The streamed answer as the JSON call would have had it."""
        message = AssistantMessage(
            content="".join(self._text), refusal="".join(self._refusal) or None
        )
        return ChatCompletion(
            id=self.inner.ctx.request_id,
            model=self.inner.model,
            choices=[Choice(message=message)],
            usage=self.inner.result.usage,
        )
