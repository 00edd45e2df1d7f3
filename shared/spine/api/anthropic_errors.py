"""Errors in Anthropic's shape on the Messages API's routes.

Everything in Spine answers OpenAI's error shape (`spine.api.errors`, the request
middleware, the stream relay); on `/v1/messages*` this middleware rewrites each error
answer, whoever produced it (a 401 from auth, a 413 from the body limit, a 503 from a
dead database), into `{"type": "error", "error": {"type", "message"}, "request_id"}`,
so Anthropic's SDKs raise their own classes. Kept in one place, at the edge, rather
than taught to every producer.

Claude Code compacts a conversation when an error's message starts with "prompt is
too long", so a context overflow from any model says so.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.api.middleware import REQUEST_ID_HEADER
from spine.errors import SpineError

MESSAGES_PATH_PREFIX = "/v1/messages"

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_TOO_LONG = "prompt is too long"


def anthropic_error_body(
    status: int, message: str, code: str | None, request_id: str | None = None
) -> dict[str, Any]:
    if code == "context_length_exceeded" and not message.startswith(_TOO_LONG):
        message = f"{_TOO_LONG}: {message}"
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def anthropic_error_event(exc: SpineError) -> bytes:
    """A failure after a stream started, as Anthropic sends one: an `error` event."""
    body = anthropic_error_body(exc.status_code, exc.message, exc.code)
    return b"event: error\ndata: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class AnthropicErrorShape:
    """ASGI middleware: OpenAI-shaped JSON errors on the Messages routes become
    Anthropic-shaped; every other answer passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(
            MESSAGES_PATH_PREFIX
        ):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body = bytearray()

        async def reshape(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                if message["status"] >= 400 and _is_json(message):
                    held = message  # rewritten once its body is complete
                    return
                await send(message)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            start, rewritten = _rewritten(held, bytes(body))
            await send(start)
            await send({"type": "http.response.body", "body": rewritten})

        await self.app(scope, receive, reshape)


def _is_json(start: Message) -> bool:
    return any(
        name == b"content-type" and b"json" in value for name, value in start.get("headers", [])
    )


def _rewritten(start: Message, raw: bytes) -> tuple[Message, bytes]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return start, raw
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return start, raw
    headers = [(n, v) for n, v in start.get("headers", []) if n != b"content-length"]
    request_id = next((v.decode() for n, v in headers if n == REQUEST_ID_HEADER), None)
    code = error.get("code") if isinstance(error.get("code"), str) else None
    encoded = json.dumps(
        anthropic_error_body(start["status"], error["message"], code, request_id)
    ).encode()
    headers.append((b"content-length", str(len(encoded)).encode()))
    return {**start, "headers": headers}, encoded
