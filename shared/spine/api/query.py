"""Query strings, parsed AFTER authentication (see body.py), and the pieces of
OpenAI-style list responses."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from spine.api.errors import validation_message
from spine.errors import InvalidRequestError

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_query(request: Request, model: type[ModelT]) -> ModelT:
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in values:
            raise InvalidRequestError(
                f"Query parameter '{name}' is given more than once.",
                param=name,
                code="invalid_value",
            )
        values[name] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        message, param, code = validation_message(exc.errors(include_url=False))
        raise InvalidRequestError(message, param=param, code=code) from exc


# --- list endpoints (OpenAI's cursor pagination: `limit`, `after`) --------------------

DEFAULT_PAGE = 20
MAX_PAGE = 100


def known_query(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    """The query parameters, each at most once and each one known (else 400)."""
    allowed = set(allowed)
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise InvalidRequestError(
                f"Unrecognized query parameter: {name[:64]}", param=name, code="unknown_parameter"
            )
        if name in values:
            raise InvalidRequestError(f"Query parameter '{name}' given twice.", param=name)
        values[name] = value
    return values


def small_int(raw: str) -> int | None:
    """A plain ASCII decimal of at most 10 digits, else None ('²' is a digit to
    str.isdigit, and int() refuses thousands of digits)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        return None
    return int(raw)


def page_limit(query: dict[str, str]) -> int:
    """`limit`: 1 to MAX_PAGE, DEFAULT_PAGE when absent (else 400)."""
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    value = small_int(raw)
    if value is None or not 1 <= value <= MAX_PAGE:
        raise InvalidRequestError(
            f"'limit' must be an integer from 1 to {MAX_PAGE}, got '{raw[:32]}'.",
            param="limit",
            code="invalid_value",
        )
    return value


def list_page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's list object for one page of `data` (objects with an `id`)."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def epoch(moment: datetime) -> int:
    """Unix seconds, as every timestamp of OpenAI's API."""
    return int(moment.timestamp())
