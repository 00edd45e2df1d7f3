"""Admission of a model call against the rate limits and budgets (spine.limits),
from the raw request: the body is read once here (Starlette caches it for the
route) and only skimmed for `model` and `max_tokens`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fastapi import Request

from spine.api.body import read_json
from spine.auth.principal import Principal
from spine.errors import SpineError
from spine.limits.admission import (
    Reservation,
    admit_with,
    authenticate_and_admit_with,
    estimate_cost,
    estimate_tokens,
)
from spine.observability import get_logger
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import ModelEntry
from spine.schemas.openai import SamplingParams
from spine.settings import Settings

if TYPE_CHECKING:
    from spine.storage.db import Database

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
    request: Request,
    settings: Settings,
    database: Database,
    principal: Principal,
    registry: Registry,
) -> Admitted:
    """Admission of the call the request's body describes, for a known principal."""
    estimate = await _estimate(request, registry)
    reservation = await _admit(request, settings, database, principal, estimate)
    return Admitted(principal, reservation, estimate.resolved)


async def admit_built_call(
    request: Request,
    settings: Settings,
    database: Database,
    principal: Principal,
    built: SamplingParams,
    *,
    resolved: ResolvedModel,
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
    return await _admit(request, settings, database, principal, estimate)


async def authenticate_and_admit_call(
    request: Request, settings: Settings, database: Database, token: str, registry: Registry
) -> Admitted:
    """`authenticate` an API key and `admit_call`, in one database round trip."""
    estimate = await _estimate(request, registry)
    principal, reservation = await authenticate_and_admit_with(
        database,
        token,
        settings.limits,
        estimate.entry,
        tokens=estimate.tokens,
        cost_usd=estimate.cost_usd,
    )
    _keep_headers(request, reservation)
    return Admitted(principal, reservation, estimate.resolved)


async def _admit(
    request: Request,
    settings: Settings,
    database: Database,
    principal: Principal,
    estimate: _Estimate,
) -> Reservation | None:
    reservation = await admit_with(
        database,
        principal,
        settings.limits,
        estimate.entry,
        tokens=estimate.tokens,
        cost_usd=estimate.cost_usd,
    )
    _keep_headers(request, reservation)
    return reservation


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
