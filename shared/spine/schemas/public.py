"""What every response model shares: the base class, optional keys, OpenAI's list page.

Response models (`XPublic`) describe exactly the JSON a route sends: the fields in the
order they appear on the wire, a key that is sometimes left out marked `omitted_if_none`
(present with a value, or absent; never `null`). Routes build them explicitly from
storage rows and domain objects; FastAPI documents them in each function's OpenAPI
document and serializes them.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

ItemT = TypeVar("ItemT", bound=BaseModel)


class PublicModel(BaseModel):
    # A key the route does not know is a bug, not something to pass along.
    model_config = ConfigDict(extra="forbid")


def _is_none(value: object) -> bool:
    return value is None


def omitted_if_none(description: str = "") -> Any:
    """A field left out of the JSON when it is None (its key is then absent)."""
    return Field(default=None, exclude_if=_is_none, description=description or None)


class ListPage(PublicModel, Generic[ItemT]):
    """OpenAI's cursor page: `first_id`/`last_id` are the ids at both ends of `data`;
    the next page is `?after=<last_id>`."""

    object: Literal["list"] = "list"
    data: list[ItemT]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @classmethod
    def of(cls, data: list[ItemT], has_more: bool) -> Self:
        return cls(
            data=data,
            first_id=getattr(data[0], "id") if data else None,  # noqa: B009 - ItemT has an id
            last_id=getattr(data[-1], "id") if data else None,  # noqa: B009
            has_more=has_more,
        )


class Deleted(PublicModel):
    """The answer to a DELETE: which object is gone."""

    id: str
    object: str
    deleted: Literal[True] = True


class ErrorDetail(PublicModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(PublicModel):
    """Every error, with OpenAI's shape and the status an OpenAI client expects."""

    error: ErrorDetail
