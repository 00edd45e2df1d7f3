"""Admission of a model call against the rate limits and budgets (spine.limits),
from the raw request: the body is read once here (Starlette caches it for the
route) and only skimmed for `model` and `max_tokens`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import Request

from spine.api.body import read_json
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
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import ModelEntry
from spine.schemas.openai import SamplingParams
from spine.settings import Settings

logger = get_logger(__name__)

# The middleware adds these to the response (spine.api.middleware).
HEADERS_STATE_KEY = "rate_limit_headers"


@dataclass(frozen=True)
class _Estimate:
    resolved: ResolvedModel | None
    tokens: int
    cost_usd: Decimal

    @property
    def entry(self) -> ModelEntry | None:
        return None if self.resolved is None else self.resolved.entry


async def _estimate(request: Request, registry: Registry) -> _Estimate:
    body = await read_json(request)
    fields = body.fields or {}
    resolved = _resolved(registry, fields.get("model"))
    entry = None if resolved is None else resolved.entry
    max_tokens = _max_tokens(fields)
    return _Estimate(
        resolved,
        estimate_tokens(body.size, max_tokens),
        estimate_cost(entry, body.size, max_tokens),
    )


@dataclass(frozen=True)
class Admitted:
    """An admitted call: who, what it reserved, and the model it asked for, resolved
    (None when unknown: the pipeline answers 404 after authentication)."""

    principal: Principal
    reservation: Reservation | None
    resolved: ResolvedModel | None


async def admit_call(
    request: Request, settings: Settings, principal: Principal, registry: Registry
) -> Admitted:
    """Admission of the call the request's body describes, for a known principal."""
    estimate = await _estimate(request, registry)
    reservation = await admit_estimate(request, settings, principal, estimate)
    return Admitted(principal, reservation, estimate.resolved)


async def admit_built_call(
    request: Request,
    settings: Settings,
    principal: Principal,
    resolved: ResolvedModel,
    built: SamplingParams,
    *,
    max_tokens: int | None,
) -> Reservation | None:
    """Admission of a call a service built from the request (a session's turn, with
    its history): estimated from what the model will be sent."""
    size = len(built.model_dump_json(exclude_none=True))
    estimate = _Estimate(
        resolved,
        estimate_tokens(size, max_tokens),
        estimate_cost(resolved.entry, size, max_tokens),
    )
    return await admit_estimate(request, settings, principal, estimate)


async def admit_estimate(
    request: Request, settings: Settings, principal: Principal, estimate: _Estimate
) -> Reservation | None:
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
) -> Admitted:
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

    # Retried once on a fresh connection, as in `admit_estimate`.
    principal, reservation = await db.run(admit)
    _keep_headers(request, reservation)
    return Admitted(principal, reservation, estimate.resolved)


def _keep_headers(request: Request, reservation: Reservation | None) -> None:
    if reservation is not None:
        setattr(request.state, HEADERS_STATE_KEY, reservation.headers())


def _resolved(registry: Registry, model: object) -> ResolvedModel | None:
    """The requested model, resolved once for the whole call (admission, then the
    pipeline through the call context); None when unknown (the route answers 404)."""
    if not isinstance(model, str):
        return None
    try:
        return registry.resolve(model)
    except SpineError:
        return None


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
