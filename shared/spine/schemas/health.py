"""Responses of GET /health and GET /ready."""

from __future__ import annotations

from typing import Literal

from spine.schemas.public import PublicModel, omitted_if_none


class Liveness(PublicModel):
    status: Literal["ok"] = "ok"


class ReadinessCheck(PublicModel):
    status: Literal["ok", "unavailable"]
    # The failure's kind (an exception class name), never its message: /ready is public.
    error: str | None = omitted_if_none("why the check failed, when it did")
    latency_ms: float


class Readiness(PublicModel):
    """200 with `ready` when every check passed, else 503 with `unavailable`."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, ReadinessCheck]
