"""X-Ray tracing of a function served through Lambda Web Adapter (the chat function).

Under the adapter the app runs in uvicorn's own process, not in the Lambda runtime's:
Powertools' `capture_lambda_handler` never runs there, and the X-Ray SDK finds the
invocation's trace only in `_X_AMZN_TRACE_ID`, which Lambda sets in the runtime's
process alone. The adapter forwards the invocation's trace header with each request
(`x-amzn-trace-id`), so this middleware puts it where the SDK looks and wraps the
request in a subsegment of the function's segment. The chat path's annotations
(model, provider, status) and its metadata then land in that subsegment, and the
X-Ray daemon address comes from the environment the process inherited.

The adapter sends one request at a time to an instance (Lambda's model), so one
variable per process is enough. Off unless deployed behind the adapter with tracing
on; then the Mangum path (its own handler subsegment) is unaffected.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.observability import get_tracer

TRACE_HEADER = b"x-amzn-trace-id"
_LAMBDA_TRACE_VARIABLE = "_X_AMZN_TRACE_ID"


def tracing_behind_web_adapter() -> bool:
    """Deployed (a Lambda function, not sam local or the emulator), behind the web
    adapter, with tracing not switched off."""
    return (
        bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
        and bool(os.environ.get("AWS_LWA_INVOKE_MODE"))
        and not os.environ.get("AWS_SAM_LOCAL")
        and os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() not in ("1", "true")
    )


class WebAdapterTracing:
    """ASGI middleware: one X-Ray subsegment per request, in the invocation's trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.enabled = tracing_behind_web_adapter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace_header = _header(scope, TRACE_HEADER) if scope["type"] == "http" else None
        if not self.enabled or not trace_header:
            await self.app(scope, receive, send)
            return
        os.environ[_LAMBDA_TRACE_VARIABLE] = trace_header
        status: dict[str, int] = {}

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        tracer = get_tracer()
        name = f"## {scope['method']} {scope['path']}"
        async with tracer.provider.in_subsegment_async(name=name) as subsegment:
            subsegment.put_annotation("path", scope["path"])
            try:
                await self.app(scope, receive, send_with_status)
            finally:
                if "code" in status:
                    subsegment.put_annotation("status", str(status["code"]))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
