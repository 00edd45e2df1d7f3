"""Server-sent events for streamed answers.

Each chunk is one event, flushed as soon as it is produced. Chat and text completions
are written as OpenAI sends them (`OPENAI_CHUNKS`): `data: {json}` events ending with
`data: [DONE]`; a failure after the stream started can no longer change the status
code, so it becomes an `error` event carrying OpenAI's error object, then `[DONE]`
(the `openai` SDKs raise `APIError` on a data payload with an `error` key). APIs with
typed events (Anthropic's Messages, OpenAI's Responses) bring their own `SseWire`.

While relaying, the response also listens for the client going away: the relay is
cancelled at once (even while the provider is silent), and `CompletionStream.aclose`
closes the upstream call and writes the usage row. Plain asyncio tasks are used, not
anyio cancel scopes, so the usage write in `aclose` is not itself cancelled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from spine.errors import SpineError, error_body
from spine.observability import get_logger

logger = get_logger(__name__)

DONE = b"data: [DONE]\n\n"
EVENT_STREAM_HEADERS = {
    "cache-control": "no-cache",
    # Proxies that buffer by default (nginx) pass each event on at once.
    "x-accel-buffering": "no",
}


def data_event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def error_event(exc: SpineError) -> bytes:
    body = error_body(exc.message, exc.error_type, exc.param, exc.code)
    return b"event: error\n" + data_event(body)


def named_event(payload: dict[str, Any]) -> bytes:
    """`event: <its type>` then its data: the typed events of Anthropic's Messages API
    and OpenAI's Responses API."""
    return b"event: " + str(payload["type"]).encode() + b"\n" + data_event(payload)


@dataclass(frozen=True)
class SseWire:
    """How one API writes its stream: each chunk, the end, and a failure after the
    status was sent."""

    event: Callable[[dict[str, Any]], bytes]
    error: Callable[[SpineError], bytes]
    # Sent after the last event (OpenAI's chat `[DONE]`; nothing for typed-event APIs).
    end: bytes = b""


OPENAI_CHUNKS = SseWire(event=data_event, error=error_event, end=DONE)


class RelayedStream(Protocol):
    """What the response relays: a `spine.pipeline.stream.CompletionStream`, or a
    wrapper of one (a session's stream stores the turn at its end)."""

    @property
    def model(self) -> str: ...

    def chunks(self) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class _ClientGone(Exception):
    """A send failed: the client's connection is closed."""


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self, stream: RelayedStream, headers: dict[str, str], wire: SseWire = OPENAI_CHUNKS
    ) -> None:
        super().__init__(
            status_code=200,
            headers={**EVENT_STREAM_HEADERS, **headers},
            media_type=self.media_type,
        )
        # Starlette gives a response without a body `content-length: 0`; a stream's
        # length is unknown, and uvicorn (run.sh, behind Lambda Web Adapter) would
        # obey the header and end the response before the first event.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.stream = stream
        self.wire = wire

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.ensure_future(self._relay(send))
        listener = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({relay, listener}, return_when=asyncio.FIRST_COMPLETED)
            if not relay.done():
                logger.info("client disconnected mid-stream", extra={"model": self.stream.model})
        finally:
            for task in (relay, listener):
                task.cancel()
            await asyncio.gather(relay, listener, return_exceptions=True)
            await self.stream.aclose()

    async def _relay(self, send: Send) -> None:
        async def write(body: bytes, *, more: bool = True) -> None:
            try:
                await send({"type": "http.response.body", "body": body, "more_body": more})
            except OSError as exc:  # uvicorn's ClientDisconnected is one
                raise _ClientGone from exc

        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            try:
                async for chunk in self.stream.chunks():
                    await write(self.wire.event(chunk))
            except SpineError as exc:
                logger.warning(
                    "stream failed after it started",
                    extra={"status": exc.status_code, "code": exc.code},
                )
                await write(self.wire.error(exc))
            if self.wire.end:
                await write(self.wire.end)
            await write(b"", more=False)
        except (_ClientGone, OSError):
            logger.info("client disconnected mid-stream", extra={"model": self.stream.model})


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
