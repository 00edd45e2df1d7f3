"""GET /v1/executions: its query string and the execution objects it lists."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spine.schemas.public import PublicModel
from spine.schemas.usage import parse_instant

CAPABILITY_ENDPOINT_PREFIX = "capability."


class ExecutionsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capability: Annotated[str, Field(pattern=r"^[a-z][a-z-]{0,31}$")] | None = None
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    status: Literal["ok", "error"] | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Admins only: another principal of their tenant (else their tenant's rows).
    principal: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    after: Annotated[str, Field(min_length=1, max_length=256)] | None = None

    @field_validator("since", "until", mode="before")
    @classmethod
    def _instant(cls, value: object) -> object:
        return parse_instant(value) if isinstance(value, str) else value


class ExecutionPublic(PublicModel):
    """One capability call or prompt execution, as its usage row records it."""

    id: str  # the request id
    object: Literal["execution"] = "execution"
    created_at: int
    # `summarize`, `extract`, ...; None for POST /v1/execute-prompt.
    capability: str | None
    endpoint: str
    prompt: str | None  # the prompt's slug (None once the prompt is deleted)
    prompt_version: int | None
    prompt_version_id: str | None
    model: str
    resolved_model: str | None
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float | None
    status: str
    error_code: str | None
    cache_hit: bool
