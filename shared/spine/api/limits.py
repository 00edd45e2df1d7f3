"""Admission of a model call against the rate limits and budgets (spine.limits),
from the raw request: the body is read once here (Starlette caches it for the
route) and only skimmed for `model` and `max_tokens`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import Request

from spine.auth.principal import Principal
from spine.errors import SpineError
from spine.limits.admission import (
    Reservation,
    admit_api_key_request,
    admit_request,
    estimate_cost,
    estimate_tokens,
)
from spine.observability import get_logger
from spine.registry.resolve import Registry
from spine.registry.schema import ModelEntry
from spine.settings import Settings

logger = get_logger(__name__)

# The middleware adds these to the response (spine.api.middleware).
HEADERS_STATE_KEY = "rate_limit_headers"


@dataclass(frozen=True)
class _Estimate:
    entry: ModelEntry | None
    tokens: int
    cost_usd: Decimal


async def _estimate(request: Request, registry: Registry) -> _Estimate:
    body = await request.body()
    fields = _skim(body)
    entry = _model_entry(registry, fields.get("model"))
    max_tokens = _max_tokens(fields)
    return _Estimate(
        entry, estimate_tokens(body, max_tokens), estimate_cost(entry, body, max_tokens)
    )


async def admit_call(
    request: Request, settings: Settings, principal: Principal, registry: Registry
) -> Reservation | None:
    estimate = await _estimate(request, registry)
    from spine.storage import db

    async def admit(conn: db.Connection) -> Reservation | None:
        return await admit_request(
            conn,
            principal,
            settings.limits,
            estimate.entry,
            tokens=estimate.tokens,
            cost_usd=estimate.cost_usd,
        )

    # Retried once on a fresh connection when the first one turns out dead (a
    # restart while the container was idle): the statement never reached the
    # server then. Should it have committed before the link broke, the request is
    # counted twice in its window: the safe side of a limit.
    reservation = await db.run(admit)
    _keep_headers(request, reservation)
    return reservation


async def authenticate_and_admit_call(
    request: Request, settings: Settings, token: str, registry: Registry
) -> tuple[Principal, Reservation | None]:
    """`authenticate` an API key and `admit_call`, in one database round trip."""
    estimate = await _estimate(request, registry)
    from spine.storage import db

    async def admit(conn: db.Connection) -> tuple[Principal, Reservation | None]:
        return await admit_api_key_request(
            conn,
            token,
            settings.limits,
            estimate.entry,
            tokens=estimate.tokens,
            cost_usd=estimate.cost_usd,
        )

    # Retried once on a fresh connection, as in `admit_call`.
    principal, reservation = await db.run(admit)
    _keep_headers(request, reservation)
    return principal, reservation


def _keep_headers(request: Request, reservation: Reservation | None) -> None:
    if reservation is not None:
        setattr(request.state, HEADERS_STATE_KEY, reservation.headers())


def _skim(body: bytes) -> dict[str, Any]:
    # Malformed bodies are the route's to report (a 400 naming the problem); so are
    # bodies nested too deeply for the parser.
    try:
        parsed = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _model_entry(registry: Registry, model: object) -> ModelEntry | None:
    if not isinstance(model, str):
        return None
    try:
        return registry.resolve(model).entry
    except SpineError:
        return None  # unknown model: the route answers 404


def _max_tokens(fields: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = fields.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


async def release_unused(reservation: Reservation) -> None:
    """Give back estimates no provider call settled (the request failed before
    reaching one); a no-op, without a database trip, once a call settled them."""
    if not reservation.holds_estimates:
        return
    from spine.limits.admission import settle_reservation
    from spine.storage import db

    try:
        conn = await db.connection()
        await settle_reservation(conn, reservation, tokens=0, cost_usd=Decimal(0))
    except Exception:
        # The estimate stays counted until its window ends: the safe side.
        logger.exception("rate limit release failed")
