"""A model call a service makes outside an HTTP request (a batch line, a pipeline
step): admitted against the caller's rate limits and budgets on what the model will
be sent, its usage row settling the reservation, and an estimate no provider call
settled given back at the end (what the request middleware does for HTTP calls).

Calls to one model may be admitted together (`admit_together`: a batch's group of
lines, one round trip), each then run with its share (`reserved_call`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal

from spine.auth.principal import Principal
from spine.ledger.recorder import SettlingRecorder, UsageRecorder
from spine.limits.admission import (
    Reservation,
    admit_with,
    estimate_cost,
    estimate_tokens,
    release_with,
    shares,
)
from spine.pipeline.context import CallContext
from spine.registry.resolve import Registry, ResolvedModel
from spine.settings import Settings
from spine.storage.db import Database


@asynccontextmanager
async def admitted_call(
    *,
    database: Database,
    settings: Settings,
    registry: Registry,
    recorder: UsageRecorder,
    principal: Principal,
    resolved: ResolvedModel,
    request_id: str,
    request_bytes: int,
    max_tokens: int | None,
    wrap: Callable[[UsageRecorder], UsageRecorder] | None = None,
) -> AsyncIterator[CallContext]:
    """The call's context, admitted; `wrap` adds to its recorder (a batch's tags)."""
    (reservation,) = await admit_together(
        database, settings, principal, resolved, [(request_bytes, max_tokens)]
    )
    async with reserved_call(
        reservation,
        database=database,
        settings=settings,
        registry=registry,
        recorder=recorder,
        principal=principal,
        resolved=resolved,
        request_id=request_id,
        wrap=wrap,
    ) as ctx:
        yield ctx


async def admit_together(
    database: Database,
    settings: Settings,
    principal: Principal,
    resolved: ResolvedModel,
    calls: Sequence[tuple[int, int | None]],
) -> Sequence[Reservation | None]:
    """Admit calls to one model at once, each given as (request bytes, max tokens):
    their reservations, one each (None: no limit applies). All or none: raises
    `RateLimitError` / `QuotaExceededError` when they do not fit together."""
    estimates = [
        (estimate_tokens(size, max_tokens), estimate_cost(resolved.entry, size, max_tokens))
        for size, max_tokens in calls
    ]
    reservation = await admit_with(
        database,
        principal,
        settings.limits,
        resolved.entry,
        tokens=sum(tokens for tokens, _ in estimates),
        cost_usd=sum((cost for _, cost in estimates), Decimal(0)),
        requests=len(calls),
    )
    if reservation is None:
        return [None] * len(calls)
    return list(shares(reservation, estimates))


@asynccontextmanager
async def reserved_call(
    reservation: Reservation | None,
    *,
    database: Database,
    settings: Settings,
    registry: Registry,
    recorder: UsageRecorder,
    principal: Principal,
    resolved: ResolvedModel,
    request_id: str,
    wrap: Callable[[UsageRecorder], UsageRecorder] | None = None,
) -> AsyncIterator[CallContext]:
    """The context of a call admitted already with `reservation`, which its usage
    row settles and which is given back at the end if no provider call did."""
    settling = recorder
    if reservation is not None:
        settling = SettlingRecorder(recorder, reservation, database)
    try:
        yield CallContext(
            request_id=request_id,
            principal=principal,
            settings=settings,
            registry=registry,
            recorder=wrap(settling) if wrap is not None else settling,
            database=database,
            resolved=resolved,
        )
    finally:
        if reservation is not None:
            await release_with(database, reservation)
