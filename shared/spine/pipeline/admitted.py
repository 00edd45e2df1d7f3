"""A model call a service makes outside an HTTP request (a batch line, a pipeline
step): admitted against the caller's rate limits and budgets on what the model will
be sent, its usage row settling the reservation, and an estimate no provider call
settled given back at the end (what the request middleware does for HTTP calls)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from spine.auth.principal import Principal
from spine.ledger.recorder import SettlingRecorder, UsageRecorder
from spine.limits.admission import admit_with, estimate_cost, estimate_tokens, release_with
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
    reservation = await admit_with(
        database,
        principal,
        settings.limits,
        resolved.entry,
        tokens=estimate_tokens(request_bytes, max_tokens),
        cost_usd=estimate_cost(resolved.entry, request_bytes, max_tokens),
    )
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
