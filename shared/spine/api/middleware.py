"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on every request):
request ids, the body-size limit, and request logging context."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.errors import error_body
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


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, behind_web_adapter: bool = False
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.behind_web_adapter = behind_web_adapter

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


async def _release_unused_reservation(scope: Scope) -> None:
    """Give back rate-limit estimates that no provider call settled (see
    spine.api.deps.call_context); shielded, so a client that left cannot cancel it."""
    reservation = scope.get("state", {}).get(RESERVATION_STATE_KEY)
    if reservation is None:
        return
    from spine.api.limits import release_unused

    with anyio.CancelScope(shield=True):
        await release_unused(reservation)


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


async def _send_too_large(send: Send, request_id: str, limit: int) -> None:
    body = json.dumps(
        error_body(
            f"Request body too large: the limit is {limit} bytes.",
            "invalid_request_error",
            None,
            "request_too_large",
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (REQUEST_ID_HEADER, request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
