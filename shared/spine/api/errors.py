"""The one place where exceptions become HTTP responses.

Every error body has OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`,
so any OpenAI client raises its usual exception classes against Spine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from spine.errors import SpineError, error_body
from spine.observability import get_logger

logger = get_logger(__name__)

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def error_response(
    status: int,
    message: str,
    error_type: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    kind = error_type or _STATUS_TYPES.get(status, "server_error")
    return JSONResponse(error_body(message, kind, param, code), status_code=status, headers=headers)


def spine_error_response(exc: SpineError) -> JSONResponse:
    return error_response(
        exc.status_code,
        exc.message,
        exc.error_type,
        param=exc.param,
        code=exc.code,
        headers=exc.headers,
    )


def param_path(loc: Sequence[Any]) -> str | None:
    """('body', 'messages', 0, 'role') -> 'messages[0].role' (OpenAI's param style)."""
    parts = [p for p in loc if p != "body"]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue  # pydantic union/validator tags, not fields
        else:
            text += f".{part}" if text else str(part)
    return text or None


# Bad fields named in one message; a request with more gets "and N more".
MAX_NAMED_ERRORS = 20


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None, str]:
    """Every validation error in one message (the first 20), with the first's param
    and code: a client fixing its request learns of every bad field at once."""
    described = [_described(error) for error in errors[:MAX_NAMED_ERRORS]]
    message = "; ".join(text for text, _, _ in described)
    if len(errors) > MAX_NAMED_ERRORS:
        message += f"; and {len(errors) - MAX_NAMED_ERRORS} more"
    _, param, code = described[0]
    return message, param, code


def _described(error: Any) -> tuple[str, str | None, str]:
    """One validation error as (message, param, code)."""
    param = param_path(error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "json_invalid":
        detail = error.get("ctx", {}).get("error", "invalid JSON")
        return f"The request body is not valid JSON: {detail}", None, "invalid_json"
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param, "unknown_parameter"
    if kind == "missing":
        return f"Missing required parameter: '{param}'", param, "missing_required_parameter"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    where = f"'{param}'" if param else "request body"
    return f"Invalid value for {where}: {message}", param, "invalid_value"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SpineError)
    async def _spine(_: Request, exc: SpineError) -> JSONResponse:
        if exc.status_code >= 500:
            # The cause (a driver's or SDK's message) may name hosts or accounts: it is
            # logged here, never sent.
            cause = exc.__cause__
            logger.warning(
                "request failed",
                extra={
                    "status": exc.status_code,
                    "code": exc.code,
                    "cause": None if cause is None else f"{type(cause).__name__}: {cause}"[:1000],
                },
            )
        return spine_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = validation_message(exc.errors())
        return error_response(400, message, param=param, code=code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code in (404, 405):
            # The function's router found no route for this method and path (a CORS
            # preflight with no [cors] origins, say): the same answer as API Gateway's
            # (template.yaml GatewayResponses) and OpenAI's, which tell neither apart.
            message = f"Invalid URL ({request.method} {request.url.path})"
            return error_response(404, message, code="unknown_url")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, message, headers=headers)

    # Any other exception is answered by spine.api.middleware (a 500, or a 503 for a
    # dead database link), inside the middleware that adds the request id.
