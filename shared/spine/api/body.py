"""Parse a JSON body into a request model AFTER authentication.

FastAPI validates declared bodies before dependencies have run, which would answer
an unauthenticated caller's malformed JSON with 400 instead of 401. Routes take the
raw request and call `parse_body` once the principal is known. The JSON is parsed
once per request (`read_json`): admission reads the model and output limit from it
before the route validates it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from spine.api.errors import validation_message
from spine.errors import InvalidRequestError

ModelT = TypeVar("ModelT", bound=BaseModel)


# Where a request's parsed body is kept: read and parsed once, by whichever of
# admission (spine.api.limits) and the route asks first.
BODY_STATE_KEY = "spine_body"


@dataclass(frozen=True)
class JsonBody:
    """A request body parsed as JSON once: its object, or why it is not one (reported
    only after authentication, so an anonymous caller gets 401, never a 400)."""

    fields: dict[str, Any] | None
    problem: InvalidRequestError | None = None
    size: int = 0


async def read_json(request: Request) -> JsonBody:
    """The body as a JSON object, parsed on first use and kept for the request."""
    known: JsonBody | None = getattr(request.state, BODY_STATE_KEY, None)
    if known is not None:
        return known
    body = _parsed(request.headers.get("content-type", "application/json"), await request.body())
    setattr(request.state, BODY_STATE_KEY, body)
    return body


async def parse_body(request: Request, model: type[ModelT], *, stored: bool = False) -> ModelT:
    """The body as `model`; with `stored`, also refuse NUL characters in any text (the
    one rule for every text Spine stores: Postgres cannot hold NUL)."""
    body = await read_json(request)
    if body.problem is not None:
        raise body.problem
    try:
        parsed = model.model_validate(body.fields)
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


def _parsed(content_type: str, raw: bytes) -> JsonBody:
    if "json" not in content_type.lower():
        problem = InvalidRequestError(
            f"Unsupported content type '{content_type}': send application/json.",
            code="unsupported_media_type",
        )
        return JsonBody(None, problem, len(raw))
    if not raw.strip():
        problem = InvalidRequestError(
            "The request body is empty: send a JSON object.", code="invalid_json"
        )
        return JsonBody(None, problem, len(raw))
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        # RecursionError: nested deeper than the parser goes (ValueError covers bad
        # UTF-8, bad JSON, NaN/Infinity and integers of over 4300 digits).
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        problem = InvalidRequestError(
            f"The request body is not valid JSON: {detail}", code="invalid_json"
        )
        return JsonBody(None, problem, len(raw))
    if not isinstance(value, dict):
        problem = InvalidRequestError(
            "The request body must be a JSON object.", code="invalid_json"
        )
        return JsonBody(None, problem, len(raw))
    return JsonBody(value, None, len(raw))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


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
