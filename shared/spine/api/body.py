"""Parse a JSON body into a request model AFTER authentication.

FastAPI validates declared bodies before dependencies have run, which would answer
an unauthenticated caller's malformed JSON with 400 instead of 401. Routes take the
raw request and call `parse_body` once the principal is known.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from spine.api.errors import validation_message
from spine.errors import InvalidRequestError

ModelT = TypeVar("ModelT", bound=BaseModel)


async def parse_body(request: Request, model: type[ModelT], *, stored: bool = False) -> ModelT:
    """The body as `model`; with `stored`, also refuse NUL characters in any text (the
    one rule for every text Spine stores: Postgres cannot hold NUL)."""
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
        parsed = model.model_validate_json(raw)
    except ValidationError as exc:
        message, param, code = validation_message(exc.errors(include_url=False))
        raise InvalidRequestError(message, param=param, code=code) from exc
    if stored and (where := _nul_at(parsed.model_dump(), "")) is not None:
        raise InvalidRequestError(
            f"Invalid value for '{where}': text stored by Spine may not contain NUL "
            "(\\u0000) characters.",
            param=where,
            code="invalid_characters",
        )
    return parsed


def _nul_at(value: Any, path: str) -> str | None:
    """The param path of the first text (or mapping key) holding NUL, else None."""
    if isinstance(value, str):
        return path or "body" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return inner
            if (found := _nul_at(item, inner)) is not None:
                return found
    if isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            if (found := _nul_at(item, f"{path}[{index}]")) is not None:
                return found
    return None
