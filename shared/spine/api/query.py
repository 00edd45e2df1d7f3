"""Parse a query string into a strict model AFTER authentication (see body.py)."""

from __future__ import annotations

from typing import TypeVar

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
