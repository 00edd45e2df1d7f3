"""Relay a streamed response of a web-adapter function as it is produced.

Deployed: API Gateway (ResponseTransferMode STREAM) invokes the function with response
streaming; Lambda Web Adapter turns the event into an HTTP request to the function's
web app and streams the app's response back. Here the app runs in a container thread
on that container's own loop (one request per container, as for event invocations),
with an ASGI request built from the same API Gateway event the buffered path sends:
the event is in the scope as `aws.event` (as Mangum puts it) and its requestContext in
the `x-amzn-request-context` header (as the adapter sends it).

Messages cross between the server's loop and the container's with
`call_soon_threadsafe`; each body chunk is written to the client as soon as the app
sends it, and the app's `send` of a body chunk returns once it is written (as
uvicorn's does). That wait matters for latency, not only for backpressure: while the
app waits, its thread sleeps in its loop's select and so lets go of the GIL, and the
server's thread relays the chunk at once. Without it the server's thread waits for the
GIL while the container goes on with the rest of the request, up to CPython's 5 ms
switch interval (measured: 1.1 ms median added to the first chunk). A client that
goes away is passed to the app as `http.disconnect`, and the app's later sends raise
OSError, as uvicorn does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from spine.observability import bind_function
from spine_tools.local import events
from spine_tools.local.events import HttpRequest, HttpResponse
from spine_tools.local.runtime import AsgiApp, Failed, FunctionRuntime, TimedOut

logger = logging.getLogger("spine_tools.local")

ADAPTER_CONTEXT_HEADER = "x-amzn-request-context"


def asgi_scope(request: HttpRequest, event: dict[str, Any]) -> dict[str, Any]:
    """The HTTP request the web adapter would send the app for this event."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers
        if name.lower() != ADAPTER_CONTEXT_HEADER  # the adapter's own, never the client's
    ]
    headers.append((ADAPTER_CONTEXT_HEADER.encode(), json.dumps(event["requestContext"]).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": request.query_string.encode("latin-1"),
        "headers": headers,
        "client": (request.source_ip, 0),
        "server": ("127.0.0.1", request.server_port),
        "aws.event": event,
    }


class _Channel:
    """The two sides of one streamed invocation."""

    def __init__(self, server_loop: asyncio.AbstractEventLoop) -> None:
        self.server_loop = server_loop
        self.outbox: asyncio.Queue[Message | None] = asyncio.Queue()  # None: the app ended
        self.client_gone = threading.Event()
        self._wake_app: Callable[[], None] | None = None
        # Wakes the app's send waiting for its body chunk: True once it is written,
        # False when the server stops relaying first.
        self._wake_sender: Callable[[bool], object] | None = None
        self._closed = False  # the server relays no more
        self._lock = threading.Lock()

    # container side ---------------------------------------------------------------------

    async def run(self, app: AsgiApp, scope: dict[str, Any], body: bytes) -> None:
        loop = asyncio.get_running_loop()
        disconnected = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(disconnected.set)

        with self._lock:
            self._wake_app = wake
        if self.client_gone.is_set():
            disconnected.set()
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if self.client_gone.is_set():
                raise OSError("the client closed the connection")
            if message["type"] != "http.response.body":
                self._post(message)
                return
            written: asyncio.Future[bool] = loop.create_future()
            with self._lock:
                relaying = not self._closed
                if relaying:
                    self._wake_sender = lambda ok: loop.call_soon_threadsafe(_resolve, written, ok)
            if relaying:
                self._post(message)
                relaying = await written
            if not relaying:  # the server stopped relaying before writing it
                if self.client_gone.is_set():
                    raise OSError("the client closed the connection")
                return  # the gateway has already answered for the app
            if not message.get("more_body"):
                disconnected.set()  # the response is complete, as uvicorn reports it

        try:
            await app(scope, receive, send)
        finally:
            self._post(None)

    def _post(self, message: Message | None) -> None:
        self.server_loop.call_soon_threadsafe(self.outbox.put_nowait, message)

    # server side ------------------------------------------------------------------------

    def written(self) -> None:
        """The body chunk the app is sending has reached the client."""
        with self._lock:
            wake, self._wake_sender = self._wake_sender, None
        if wake is not None:
            wake(True)

    def close(self) -> None:
        """No more relaying: an app still sending is let go."""
        with self._lock:
            self._closed = True
            wake, self._wake_sender = self._wake_sender, None
        if wake is not None:
            wake(False)

    def disconnect(self) -> None:
        self.client_gone.set()
        with self._lock:
            wake = self._wake_app
        if wake is not None:
            wake()
        self.close()


async def _named(function_name: str, running: Awaitable[None]) -> None:
    """Run a web-adapter app in its container thread with its function's name on its
    log lines, as Lambda's own variables give it deployed."""
    bind_function(function_name)
    await running


def _resolve(future: asyncio.Future[bool], written: bool) -> None:
    if not future.done():  # cancelled when the invocation was abandoned
        future.set_result(written)


def _nothing() -> None:
    return None


class StreamedInvocation(Response):
    """The emulator's answer for a response-streaming function."""

    def __init__(
        self,
        runtime: FunctionRuntime,
        request: HttpRequest,
        event: dict[str, Any],
        request_id: str,
        gateway_timeout: float,
        *,
        gateway_answer: Callable[[HttpResponse], HttpResponse] | None = None,
    ) -> None:
        super().__init__()
        self.runtime = runtime
        self.request = request
        self.event = event
        self.request_id = request_id
        self.gateway_timeout = gateway_timeout
        # API Gateway's own answers (timeout, failure) as the template's
        # GatewayResponses shape them, as for every other function.
        self.gateway_answer = gateway_answer or (lambda answer: answer)
        self.status = 0  # what the client got, for the emulator's request log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = _Channel(asyncio.get_running_loop())
        app_scope = asgi_scope(self.request, self.event)
        body = self.request.body
        listener = asyncio.ensure_future(_wait_disconnect(receive))
        finished = False
        began = time.perf_counter()
        gateway_deadline = time.monotonic() + self.gateway_timeout
        # Everything is set up before the container starts, and nothing wakes this loop
        # when it does (`invocation.started` says it): work here now would only hold
        # the GIL the container needs.
        spec = self.runtime.spec
        future, invocation = self.runtime.submit_asgi(
            lambda app: _named(spec.function_name, channel.run(app, app_scope, body)),
            on_start=_nothing,
        )
        outcome = asyncio.wrap_future(future)
        try:
            first = await _next_message(channel, outcome, gateway_deadline)
            if (
                first is None
                or isinstance(first, _Timeout)
                or first["type"] != "http.response.start"
            ):
                await self._answer_without_app(first, future, invocation, outcome, send)
            else:
                function_deadline = invocation.started_at + self.runtime.spec.timeout_seconds
                await self._relay(
                    first,
                    channel,
                    listener,
                    send,
                    deadline=function_deadline,
                    invocation=invocation,
                )
            finished = True
        except OSError:
            logger.info("client disconnected from a streamed response")
        finally:
            listener.cancel()
            if not finished:
                channel.disconnect()  # the app sees http.disconnect and stops
            channel.close()
            logger.info(
                "%s %s -> %d %s %.0f ms (streamed)",
                self.request.method,
                self.request.path,
                self.status,
                self.runtime.spec.logical_id,
                (time.perf_counter() - began) * 1000,
            )

    async def _answer_without_app(
        self,
        first: Message | _Timeout | None,
        future: Any,
        invocation: Any,
        outcome: asyncio.Future[Any],
        send: Send,
    ) -> None:
        if isinstance(first, _Timeout):
            if invocation.started.is_set():
                self.runtime.abandon(invocation)
            else:
                future.cancel()  # still queued: it never reaches a container
            answer = events.endpoint_timed_out(self.request_id)
        else:
            result = outcome.result() if outcome.done() else None
            if isinstance(result, Failed | TimedOut) or first is None:
                logger.error("function %s ended without a response", self.runtime.spec.logical_id)
            answer = events.internal_server_error(self.request_id)
        await self._send_whole(self.gateway_answer(answer), send)

    async def _relay(
        self,
        start: Message,
        channel: _Channel,
        listener: asyncio.Future[None],
        send: Send,
        *,
        deadline: float,
        invocation: Any,
    ) -> None:
        headers = [
            (name, value)
            for name, value in start.get("headers", [])
            if bytes(name).lower() != b"content-length"
        ]
        headers.append((b"x-amzn-requestid", self.request_id.encode()))
        self.status = int(start["status"])
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        while True:
            if not channel.outbox.empty() and time.monotonic() < deadline:
                message = channel.outbox.get_nowait()  # no task or wait when one is queued
            else:
                getter = asyncio.ensure_future(channel.outbox.get())
                waiting: set[asyncio.Future[Any]] = {getter, listener}
                await asyncio.wait(
                    waiting,
                    timeout=max(0.0, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not getter.done():
                    getter.cancel()
                    if listener.done():
                        channel.disconnect()  # the app sees http.disconnect and stops
                        return
                    logger.error("function %s timed out mid-stream", self.runtime.spec.logical_id)
                    self.runtime.abandon(invocation)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                message = getter.result()
            if message is None:  # the app returned without finishing its body
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if message["type"] != "http.response.body":
                continue
            more = bool(message.get("more_body"))
            try:
                await send(
                    {
                        "type": "http.response.body",
                        "body": message.get("body", b""),
                        "more_body": more,
                    }
                )
            except OSError:
                channel.disconnect()
                return
            channel.written()
            if not more:
                return

    async def _send_whole(self, answer: HttpResponse, send: Send) -> None:
        self.status = answer.status
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in answer.headers
                ]
                + [(b"content-length", str(len(answer.body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})


class _Timeout:
    """API Gateway's integration timeout passed before the response started."""


async def _next_message(
    channel: _Channel, outcome: asyncio.Future[Any], deadline: float
) -> Message | _Timeout | None:
    if not channel.outbox.empty():
        return channel.outbox.get_nowait()
    getter = asyncio.ensure_future(channel.outbox.get())
    await asyncio.wait(
        {getter, outcome},
        timeout=max(0.0, deadline - time.monotonic()),
        return_when=asyncio.FIRST_COMPLETED,
    )
    if getter.done():
        return getter.result()
    getter.cancel()
    if outcome.done():
        # The app ended; its messages may still be on their way to this loop.
        try:
            return await asyncio.wait_for(channel.outbox.get(), 1.0)
        except TimeoutError:
            return None
    return _Timeout()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
