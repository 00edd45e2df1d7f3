"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on every request):
request ids, the body-size limit, request logging context, NUL characters in URLs,
and the answer to an exception no handler took (a 500, or the 503 of a dead database
link), which would otherwise leave Starlette's outermost middleware, before the
request id is added."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.errors import SpineError, error_body
from spine.limits.admission import release_with
from spine.observability import bind_request, get_logger, unbind_request

logger = get_logger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
# request.state attribute holding a call's rate-limit Reservation until the response
# is done (set by spine.api.deps.call_context).
RESERVATION_STATE_KEY = "spine_reservation"


ADAPTER_CONTEXT_HEADER = b"x-amzn-request-context"


def request_id_of(scope: Scope, *, behind_web_adapter: bool = False) -> str:
    """API Gateway's request id when behind it (so logs, usage rows and the
    x-request-id header all agree with CloudWatch), else a fresh one. A client's own
    x-request-id is never trusted as the key: usage rows are unique per request.

    Mangum (and the local emulator) hand the API Gateway event over in the scope;
    Lambda Web Adapter sends its `requestContext` as a JSON header, which is trusted
    only when this process runs behind the adapter (it sets the header itself)."""
    event = scope.get("aws.event")
    context: Any = event.get("requestContext") if isinstance(event, dict) else None
    if context is None and behind_web_adapter:
        context = _adapter_context(scope)
    if isinstance(context, dict):
        rid = context.get("requestId")
        if isinstance(rid, str) and rid:
            return rid
    return f"req_{uuid.uuid4().hex}"


def _adapter_context(scope: Scope) -> Any:
    for name, value in scope.get("headers", []):
        if name == ADAPTER_CONTEXT_HEADER:
            try:
                return json.loads(value)
            except ValueError:
                return None
    return None


# Turns an exception from below the HTTP layer (a database driver's) into the
# SpineError it means, or None.
ErrorTranslator = Callable[[BaseException], SpineError | None]


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        behind_web_adapter: bool = False,
        translate_error: ErrorTranslator | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.behind_web_adapter = behind_web_adapter
        self.translate_error = translate_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope, behind_web_adapter=self.behind_web_adapter)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder: dict[str, Any] = {}

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _send_too_large(send, request_id, self.max_body_bytes)
            return
        if _has_nul(scope):
            # Every stored or looked-up text refuses NUL (Postgres cannot hold it).
            await _send_error(
                send,
                request_id,
                400,
                error_body(
                    "The URL may not contain NUL (%00) characters.",
                    "invalid_request_error",
                    None,
                    "invalid_characters",
                ),
            )
            return

        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                headers.extend(_rate_limit_headers(scope, headers))
                message = {**message, "headers": headers}
            await send(message)

        bind_request(logger, request_id, path=scope.get("path"), method=scope.get("method"))
        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            if "status" not in status_holder:
                await _send_too_large(send, request_id, self.max_body_bytes)
        except Exception as exc:
            if "status" in status_holder:
                raise  # the answer is under way: nothing else can be sent
            status_holder["status"] = await self._send_unhandled(send_with_id, exc)
        finally:
            await _release_unused_reservation(scope)
            if too_large and "status" not in status_holder:
                status_holder["status"] = 413
            logger.info(
                "request finished",
                extra={
                    "status": status_holder.get("status"),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            unbind_request(logger, "path", "method")

    async def _send_unhandled(self, send: Send, exc: Exception) -> int:
        """The answer to an exception that no handler took; its status."""
        translated = self.translate_error(exc) if self.translate_error else None
        if translated is not None:
            logger.warning(
                "request failed",
                extra={
                    "status": translated.status_code,
                    "code": translated.code,
                    "cause": f"{type(exc).__name__}: {exc}"[:1000],
                },
            )
            body = error_body(
                translated.message, translated.error_type, translated.param, translated.code
            )
            await _send_json(send, translated.status_code, body, translated.headers)
            return translated.status_code
        logger.exception("unhandled error", extra={"error_class": type(exc).__name__})
        body = error_body("The server had an error while processing your request.", "server_error")
        await _send_json(send, 500, body, {})
        return 500


async def _release_unused_reservation(scope: Scope) -> None:
    """Give back rate-limit estimates that no provider call settled (see
    spine.api.deps.call_context); shielded, so a client that left cannot cancel it."""
    reservation = scope.get("state", {}).get(RESERVATION_STATE_KEY)
    if reservation is None:
        return

    with anyio.CancelScope(shield=True):
        await release_with(scope["app"].state.spine.database, reservation)


def _rate_limit_headers(
    scope: Scope, present: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The x-ratelimit-* headers admission left in the request state (see
    spine.api.limits), unless the response already carries them (a 429 sets its own)."""
    values = scope.get("state", {}).get("rate_limit_headers") or {}
    names = {name.lower() for name, _ in present}
    return [
        (name.encode(), value.encode())
        for name, value in values.items()
        if name.encode() not in names
    ]


class _BodyTooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _has_nul(scope: Scope) -> bool:
    return "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    encoded = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(encoded)).encode()),
                *((name.lower().encode(), value.encode()) for name, value in headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": encoded})


async def _send_error(send: Send, request_id: str, status: int, body: dict[str, Any]) -> None:
    """An answer sent before the app runs (the request id added here)."""
    await _send_json(send, status, body, {REQUEST_ID_HEADER.decode(): request_id})


async def _send_too_large(send: Send, request_id: str, limit: int) -> None:
    body = error_body(
        f"Request body too large: the limit is {limit} bytes.",
        "invalid_request_error",
        None,
        "request_too_large",
    )
    await _send_error(send, request_id, 413, body)
