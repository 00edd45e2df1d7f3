"""Shapes of the usage API: GET /v1/usage's query and report, the pricing answers,
POST /v1/estimate-cost's body and estimate.

Requests are strict: an unknown query parameter or body field is a 400 naming it.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
)

from spine.schemas.openai import ChatMessage, Tool
from spine.schemas.public import PublicModel, omitted_if_none

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


# --- responses ------------------------------------------------------------------------


class PricePublic(PublicModel):
    """A model's prices from models.yaml, USD per 1M tokens."""

    object: Literal["model.pricing"] = "model.pricing"
    model: str
    provider: str
    currency: Literal["usd"] = "usd"
    unit: Literal["USD per 1M tokens"] = "USD per 1M tokens"
    input: float
    # Prompt tokens the provider served from its cache; `input` where none is set.
    cached_input: float
    output: float
    aliases: list[str]
    resolves_to: str | None = omitted_if_none("the model id an alias or profile stands for")
    profile: str | None = omitted_if_none("the profile `model` names")


class PriceList(PublicModel):
    object: Literal["list"] = "list"
    data: list[PricePublic]


class TokenRange(PublicModel):
    min: int
    max: int


class TokenizerPublic(PublicModel):
    method: str
    exact: bool
    fallback: str | None


class CostRange(PublicModel):
    min: float
    expected: float
    max: float


class CostsPublic(PublicModel):
    without_cache: CostRange
    with_cache: CostRange


class CostEstimate(PublicModel):
    object: Literal["cost_estimate"] = "cost_estimate"
    model: str
    resolved_model: str
    provider: str
    prompt_tokens: int
    prompt_tokens_range: TokenRange
    completion_tokens: int
    completion_tokens_source: Literal["request", "profile", "model_default", "assumed_default"]
    tokenizer: TokenizerPublic
    fits_context_window: bool
    pricing: PricePublic
    cost_usd: CostsPublic


class UsageFiltersPublic(PublicModel):
    tenant: str | None
    principal: str | None
    key: str | None
    model: str | None


class UsageSumsPublic(PublicModel):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float


class UsageByModel(UsageSumsPublic):
    model: str | None


class UsageByDay(UsageSumsPublic):
    date: str | None


class UsageByKey(UsageSumsPublic):
    api_key_id: str | None


GroupT = TypeVar("GroupT", bound=UsageSumsPublic)


class UsageBreakdown(PublicModel, Generic[GroupT]):
    object: Literal["list"] = "list"
    data: list[GroupT]
    has_more: bool


class UsageReportPublic(PublicModel):
    """GET /v1/usage: totals, and one page per breakdown asked for (`group_by`),
    the pages in the order asked."""

    object: Literal["usage.report"] = "usage.report"
    start: str
    end: str
    filters: UsageFiltersPublic
    totals: UsageSumsPublic
    limit: int
    offset: int
    by_model: UsageBreakdown[UsageByModel] | None = omitted_if_none()
    by_day: UsageBreakdown[UsageByDay] | None = omitted_if_none()
    by_key: UsageBreakdown[UsageByKey] | None = omitted_if_none()
    # The breakdowns' order on the wire: the order `group_by` named them.
    _order: tuple[str, ...] = PrivateAttr(default=())

    @classmethod
    def of(cls, body: dict[str, Any]) -> UsageReportPublic:
        """The report `spine.usage.report` builds, checked against this shape."""
        report = cls.model_validate(body)
        report._order = tuple(key for key in body if key.startswith("by_"))
        return report

    def content(self) -> dict[str, Any]:
        """The JSON-ready report, its breakdowns in the order asked. (A wrap
        serializer would do it inside pydantic, but would hide the fields from the
        OpenAPI document.)"""
        data = self.model_dump(mode="json")
        for key in self._order:
            if key in data:
                data[key] = data.pop(key)
        return data
