"""Request shapes of the usage API: GET /v1/usage's query and POST /v1/estimate-cost.

Both are strict: an unknown query parameter or body field is a 400 naming it.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spine.schemas.openai import ChatMessage, Tool

MAX_PAGE_SIZE = 1000
MAX_OFFSET = 100_000
BREAKDOWNS = ("model", "day", "key")

_UNIX_SECONDS = re.compile(r"^-?\d+(\.\d+)?$")


def parse_instant(value: str) -> datetime:
    """ISO 8601 (a date, or a date and time; no zone means UTC) or unix seconds."""
    text = value.strip()
    if _UNIX_SECONDS.match(text):
        try:
            return datetime.fromtimestamp(float(text), tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError("unix seconds out of range") from exc
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            "expected ISO 8601 (2025-03-01 or 2025-03-01T12:00:00Z) or unix seconds"
        ) from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class UsageQuery(BaseModel):
    """GET /v1/usage's query string."""

    model_config = ConfigDict(extra="forbid")

    start: datetime | None = None
    end: datetime | None = None
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    key: uuid.UUID | None = None
    principal: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    tenant: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    group_by: list[str] = Field(default_factory=lambda: list(BREAKDOWNS))
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 100
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET)] = 0

    @field_validator("start", "end", mode="before")
    @classmethod
    def _instant(cls, value: object) -> object:
        return parse_instant(value) if isinstance(value, str) else value

    @field_validator("group_by", mode="before")
    @classmethod
    def _breakdowns(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in BREAKDOWNS]
        if unknown:
            raise ValueError(
                f"unknown breakdown '{unknown[0]}' (choose from {', '.join(BREAKDOWNS)})"
            )
        return list(dict.fromkeys(names))


class EstimateCostRequest(BaseModel):
    """A chat request (`messages`) or a text prompt (`prompt`) to be priced."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    prompt: str | None = Field(default=None, min_length=1)
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: list[Tool] | None = None

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
