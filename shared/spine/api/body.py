"""Parse a JSON body into a request model AFTER authentication.

FastAPI validates declared bodies before dependencies have run, which would answer
an unauthenticated caller's malformed JSON with 400 instead of 401. Routes take the
raw request and call `parse_body` once the principal is known.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from spine.api.errors import validation_message
from spine.errors import InvalidRequestError

ModelT = TypeVar("ModelT", bound=BaseModel)


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type.lower():
        raise InvalidRequestError(
            f"Unsupported content type '{content_type}': send application/json.",
            code="unsupported_media_type",
        )
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequestError(
            "The request body is empty: send a JSON object.", code="invalid_json"
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        message, param, code = validation_message(exc.errors(include_url=False))
        raise InvalidRequestError(message, param=param, code=code) from exc
