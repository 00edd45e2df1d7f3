"""One real HTTP server on 127.0.0.1 speaking the OpenAI, Gemini and Anthropic APIs.

It runs uvicorn in a background thread so the real SDKs talk to it over real sockets.
Every request is recorded; a test queues actions (tests.fakes.script) per provider.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes import anthropic_api, batches, gemini_api, openai_api
from tests.fakes.script import Action, Cut, Delay, Events, Fail, Hang, Malformed, Reply, Stall

PROVIDERS = ("openai", "gemini", "anthropic")
ErrorRenderer = Callable[
    [int, str | None, str | None, float | None], tuple[dict[str, Any], dict[str, str]]
]
_ERROR_RENDERERS: dict[str, ErrorRenderer] = {
    "openai": openai_api.error,
    "gemini": gemini_api.error,
    "anthropic": anthropic_api.error,
}


@dataclass(frozen=True)
class RecordedRequest:
    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any  # None when the body is not JSON
    client: tuple[str, int] | None  # the caller's address: same port = reused connection


class _ConnectionCut(Exception):
    """Raised inside the ASGI app to make uvicorn drop the connection mid-answer."""


@dataclass
class FakeState:
    queues: dict[str, deque[Action]] = field(
        default_factory=lambda: {p: deque() for p in PROVIDERS}
    )
    requests: list[RecordedRequest] = field(default_factory=list)
    # Providers whose client closed a stream before it ended, one entry per stream.
    disconnects: list[str] = field(default_factory=list)
    generation: int = 0  # bumped by reset(); releases hanging handlers
    batches: batches.FakeBatches = field(default_factory=batches.FakeBatches)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            for queue in self.queues.values():
                queue.clear()
            self.requests.clear()
            self.disconnects.clear()
            self.generation += 1
        self.batches.reset()

    def next_action(self, provider: str) -> Action | None:
        with self.lock:
            queue = self.queues[provider]
            return queue.popleft() if queue else None

    async def wait(self, seconds: float) -> None:
        """Sleep, but wake as soon as the test that asked for it is over."""
        generation = self.generation
        deadline = time.monotonic() + seconds
        # Polling, not an asyncio.Event: reset() runs on the test's thread and loop.
        while time.monotonic() < deadline and self.generation == generation:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


# --- rendering answers -------------------------------------------------------------------


class RawData(str):
    """An SSE data payload sent as is, not JSON-encoded (a named event's broken line)."""


_BROKEN_JSON = '{"id": "broken", "choices": [{"ind'


def _sse(event: Any) -> bytes:
    """An SSE frame: a payload, or (event name, payload) as Anthropic sends them."""
    if isinstance(event, tuple):
        name, payload = event
        data = payload if isinstance(payload, RawData) else json.dumps(payload)
        return f"event: {name}\ndata: {data}\n\n".encode()
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\n\n".encode()


class _SseResponse(Response):
    """An event stream that can stop early (cut) or go silent (stall)."""

    def __init__(
        self,
        state: FakeState,
        events: list[Any],
        *,
        provider: str,
        done_marker: bool,
        cut_after: int | None = None,
        stall_after: int | None = None,
        stall_seconds: float = 0.0,
    ) -> None:
        super().__init__(media_type="text/event-stream")
        self.state = state
        self.provider = provider
        self.events = events
        self.done_marker = done_marker
        self.cut_after = cut_after
        self.stall_after = stall_after
        self.stall_seconds = stall_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Notes a client that closes the connection before the stream ends (a gateway
        # cancelling its upstream call), even while the stream is stalled.
        watcher = asyncio.ensure_future(self._watch_disconnect(receive))
        try:
            await self._stream(send)
        finally:
            watcher.cancel()

    async def _watch_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        with self.state.lock:
            self.state.disconnects.append(self.provider)

    async def _stream(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        for sent, event in enumerate(self.events):
            if sent == self.cut_after:
                raise _ConnectionCut
            if sent == self.stall_after:
                await self.state.wait(self.stall_seconds)
            await send({"type": "http.response.body", "body": _sse(event), "more_body": True})
        if self.cut_after is not None:  # fewer events than asked to cut after: cut at the end
            raise _ConnectionCut
        if self.done_marker:
            await send(
                {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True}
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _CutJsonResponse(Response):
    """Promises a whole JSON body, sends half, then drops the connection."""

    def __init__(self, body: Any) -> None:
        super().__init__()
        self.payload = json.dumps(body).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self.payload)).encode()),
                ],
            }
        )
        half = self.payload[: len(self.payload) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise _ConnectionCut


def _broken_event(like: Any) -> Any:
    """A data line cut mid-object, named like `like` when the provider names events."""
    if isinstance(like, tuple):
        return (like[0], RawData('{"type": "' + str(like[0]) + '", "ind'))
    return _BROKEN_JSON


DefaultAnswer = Callable[[], "dict[str, Any] | list[Any]"]


async def _perform(
    state: FakeState,
    provider: str,
    action: Action | None,
    default: DefaultAnswer,
) -> Response:
    done_marker = provider == "openai"
    if isinstance(action, Hang):
        await state.wait(action.seconds)
        action = None
    if isinstance(action, Delay):
        await state.wait(action.seconds)
        return await _perform(state, provider, action.then, default)
    if action is None:
        answer = default()
        if isinstance(answer, list):
            return _SseResponse(state, answer, provider=provider, done_marker=done_marker)
        return JSONResponse(answer)
    if isinstance(action, Reply):
        return JSONResponse(action.body, status_code=action.status, headers=action.headers)
    if isinstance(action, Fail):
        body, headers = _ERROR_RENDERERS[provider](
            action.status, action.message, action.kind, action.retry_after
        )
        return JSONResponse(body, status_code=action.status, headers=headers)
    if isinstance(action, Malformed):
        answer = default()
        if isinstance(answer, list):  # a streamed request: good events, then a broken one
            return _SseResponse(
                state,
                [
                    *answer[: action.after],
                    _broken_event(answer[min(action.after, len(answer) - 1)]),
                ],
                provider=provider,
                done_marker=done_marker,
            )
        return Response(_BROKEN_JSON.encode(), action.status, media_type="application/json")
    if isinstance(action, Events):
        return _SseResponse(state, action.events, provider=provider, done_marker=action.done_marker)
    answer = default()
    if isinstance(action, Cut):
        if isinstance(answer, list):
            return _SseResponse(
                state, answer, provider=provider, done_marker=done_marker, cut_after=action.after
            )
        return _CutJsonResponse(answer)
    if isinstance(action, Stall):
        events = answer if isinstance(answer, list) else [answer]
        return _SseResponse(
            state,
            events,
            provider=provider,
            done_marker=done_marker,
            stall_after=action.after,
            stall_seconds=action.seconds,
        )
    raise TypeError(f"unknown fake action {action!r}")


# --- the app -----------------------------------------------------------------------------


def build_app(state: FakeState) -> Starlette:
    async def record(provider: str, request: Request) -> RecordedRequest:
        body = await request.body()
        try:
            parsed = json.loads(body) if body else None
        except json.JSONDecodeError:
            parsed = None
        recorded = RecordedRequest(
            provider=provider,
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=parsed,
            client=(request.client.host, request.client.port) if request.client else None,
        )
        with state.lock:
            state.requests.append(recorded)
        return recorded

    async def openai_endpoint(request: Request) -> Response:
        recorded = await record("openai", request)
        body = recorded.json if isinstance(recorded.json, dict) else {}
        return await _perform(
            state,
            "openai",
            state.next_action("openai"),
            lambda: openai_api.default_answer(recorded.path, body),
        )

    async def gemini_endpoint(request: Request) -> Response:
        recorded = await record("gemini", request)
        model, _, method = request.path_params["target"].partition(":")
        body = recorded.json if isinstance(recorded.json, dict) else {}
        return await _perform(
            state,
            "gemini",
            state.next_action("gemini"),
            lambda: gemini_api.default_answer(method, model, body),
        )

    async def anthropic_endpoint(request: Request) -> Response:
        recorded = await record("anthropic", request)
        body = recorded.json if isinstance(recorded.json, dict) else {}
        counting = recorded.path.endswith("/count_tokens")
        return await _perform(
            state,
            "anthropic",
            state.next_action("anthropic"),
            lambda: (
                anthropic_api.count_tokens(body) if counting else anthropic_api.default_answer(body)
            ),
        )

    batch_routes = _batch_routes(state, record)
    return Starlette(
        routes=[
            *batch_routes,
            Route("/v1/chat/completions", openai_endpoint, methods=["POST"]),
            Route("/v1/completions", openai_endpoint, methods=["POST"]),
            Route("/v1/embeddings", openai_endpoint, methods=["POST"]),
            Route("/v1/models", openai_endpoint, methods=["GET"]),
            Route("/v1/messages", anthropic_endpoint, methods=["POST"]),
            Route("/v1/messages/count_tokens", anthropic_endpoint, methods=["POST"]),
            Route("/v1beta/models/{target:path}", gemini_endpoint, methods=["POST"]),
        ]
    )


def _batch_routes(state: FakeState, record: Callable[[str, Request], Any]) -> list[Route]:
    """OpenAI's Files + Batch API, Anthropic's Message Batches and Gemini's batch mode
    (tests.fakes.batches)."""
    store = state.batches

    def missing(kind: str) -> Response:
        return JSONResponse(
            {"error": {"message": f"No such {kind}", "type": "invalid_request_error"}}, 404
        )

    async def openai_file(request: Request) -> Response:
        await record("openai", request)
        form = await request.form()
        upload = form["file"]
        assert not isinstance(upload, str)
        content = await upload.read()
        file_id = store.add_file(content)
        return JSONResponse(batches.openai_file(file_id, len(content), str(form["purpose"])))

    async def openai_content(request: Request) -> Response:
        await record("openai", request)
        content = store.files.get(request.path_params["file_id"])
        if content is None:
            return missing("file")
        return Response(content, media_type="application/octet-stream")

    async def openai_create(request: Request) -> Response:
        recorded = await record("openai", request)
        content = store.files.get(recorded.json["input_file_id"])
        if content is None:
            return missing("file")
        lines = [json.loads(line) for line in content.splitlines() if line.strip()]
        return JSONResponse(batches.openai_batch(store.add("openai", lines), store))

    async def openai_batch(request: Request) -> Response:
        """GET a batch, or POST .../cancel."""
        await record("openai", request)
        batch_id = request.path_params["batch_id"]
        batch = store.get(batch_id) if request.method == "GET" else store.cancel(batch_id)
        return (
            missing("batch") if batch is None else JSONResponse(batches.openai_batch(batch, store))
        )

    def root(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def anthropic_create(request: Request) -> Response:
        recorded = await record("anthropic", request)
        batch = store.add("anthropic", list(recorded.json["requests"]))
        return JSONResponse(batches.anthropic_batch(batch, root(request)))

    async def anthropic_batch(request: Request) -> Response:
        """GET a batch, or POST .../cancel."""
        await record("anthropic", request)
        batch_id = request.path_params["batch_id"]
        batch = store.get(batch_id) if request.method == "GET" else store.cancel(batch_id)
        if batch is None:
            return missing("batch")
        return JSONResponse(batches.anthropic_batch(batch, root(request)))

    async def anthropic_results(request: Request) -> Response:
        await record("anthropic", request)
        batch = store.get(request.path_params["batch_id"])
        if batch is None or batch.status != "ended":
            return missing("results")
        return Response(batches.jsonl(batch.results), media_type="application/binary")

    async def gemini_create(request: Request) -> Response:
        recorded = await record("gemini", request)
        config = recorded.json["batch"]["inputConfig"]
        batch = store.add(
            "gemini", list(config["requests"]["requests"]), request.path_params["model"]
        )
        return JSONResponse(batches.gemini_operation(batch))

    async def gemini_batch(request: Request) -> Response:
        """GET a batch job's operation, or POST ...:cancel (an empty answer)."""
        await record("gemini", request)
        batch_id = "batches/" + request.path_params["batch_id"]
        if request.method == "GET":
            batch = store.get(batch_id)
            return (
                missing("batch") if batch is None else JSONResponse(batches.gemini_operation(batch))
            )
        return missing("batch") if store.cancel(batch_id) is None else JSONResponse({})

    return [
        Route("/v1beta/models/{model}:batchGenerateContent", gemini_create, methods=["POST"]),
        Route("/v1beta/batches/{batch_id}", gemini_batch, methods=["GET"]),
        Route("/v1beta/batches/{batch_id}:cancel", gemini_batch, methods=["POST"]),
        Route("/v1/files", openai_file, methods=["POST"]),
        Route("/v1/files/{file_id}/content", openai_content, methods=["GET"]),
        Route("/v1/batches", openai_create, methods=["POST"]),
        Route("/v1/batches/{batch_id}", openai_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", openai_batch, methods=["POST"]),
        Route("/v1/messages/batches", anthropic_create, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}", anthropic_batch, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}/cancel", anthropic_batch, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", anthropic_results, methods=["GET"]),
    ]


class FakeProviderServer:
    """Runs the fake app on a free loopback port in a daemon thread."""

    def __init__(self) -> None:
        self.state = FakeState()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProviderServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.state),
            http="h11",
            lifespan="off",
            log_level="critical",  # cut connections are deliberate, not news
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-providers", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake provider server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.state.reset()  # wake hanging handlers
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
