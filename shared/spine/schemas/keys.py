"""Request and response shapes of the key administration API (`/v1/keys`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from spine.schemas.public import PublicModel

# numeric(18,6) in api_keys: at most 12 digits before the point.
_Usd = Annotated[Decimal, Field(ge=0, lt=Decimal(10) ** 12, decimal_places=6)]
_Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
_Text = Annotated[str, Field(min_length=1, max_length=200)]
MAX_UNIX_SECONDS = 253_402_300_800  # 10000-01-01T00:00:00Z


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyLimitsBody(_Strict):
    """A key's overrides of the [limits] defaults: null hands the limit back to the
    config default, 0 lifts it. Fields left out are not changed."""

    rpm: _Count | None = None
    tpm: _Count | None = None
    daily_budget_usd: _Usd | None = None
    monthly_budget_usd: _Usd | None = None

    def changes(self) -> dict[str, int | Decimal | None]:
        """Only the fields the client sent, explicit nulls included."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class KeyCreate(_Strict):
    name: _Text
    principal: _Text | None = None
    tenant: _Text | None = None
    scopes: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50
    )
    tier: Annotated[str, Field(min_length=1, max_length=50)] = "standard"
    # Unix seconds, like every timestamp of OpenAI's API; before year 10000 (what
    # Python's datetime can hold).
    expires_at: Annotated[int, Field(gt=0, lt=MAX_UNIX_SECONDS)] | None = None
    limits: KeyLimitsBody | None = None


class KeyUpdate(_Strict):
    name: _Text | None = None
    limits: KeyLimitsBody | None = None


# --- responses ------------------------------------------------------------------------


class KeyLimitsPublic(PublicModel):
    """A key's own limits: null means the [limits] default applies, 0 no limit.
    Budgets are decimal strings (USD), exact as stored."""

    rpm: int | None
    tpm: int | None
    daily_budget_usd: str | None
    monthly_budget_usd: str | None


class KeyPublic(PublicModel):
    """An API key as listings show it: its prefix, never its secret."""

    object: Literal["api_key"] = "api_key"
    id: str
    name: str
    prefix: str
    principal: str | None
    tenant: str | None
    scopes: list[str]
    tier: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None
    limits: KeyLimitsPublic


class KeyCreated(KeyPublic):
    """POST /v1/keys: the key and, this once only, its secret."""

    key: str


class KeyList(PublicModel):
    object: Literal["list"] = "list"
    data: list[KeyPublic]
