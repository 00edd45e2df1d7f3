"""Which batches go to a provider's own batch API, chosen at `POST /v1/batches`
(the batch function's schedule submits them: `spine.batches.native.submit`).

Decided from the input file's summary (each model name it uses, kept at upload), so
no second read: every line's model must resolve to the same model entry, directly
(not through a profile, whose parameters and system prompt the live path adds), and
that entry must opt in with `batch: native`. Only chat completions go natively.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spine.errors import SpineError
from spine.registry.resolve import Registry, ResolvedModel
from spine.storage import native_batches as native_store
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.files import FileRow

NATIVE_ENDPOINTS = ("/v1/chat/completions",)


@dataclass(frozen=True)
class NativePlan:
    resolved: ResolvedModel
    # The name the lines send (the usage rows' `model`); the entry's id when the
    # lines use several names of it (its id and an alias).
    requested_model: str


def native_plan(
    summary: dict[str, Any] | None, endpoint: str, registry: Registry
) -> NativePlan | None:
    """The model a batch would go natively to, or None: it runs queued."""
    if summary is None or endpoint not in NATIVE_ENDPOINTS:
        return None
    names = list(summary.get("models") or {})
    try:
        models = [registry.resolve(name) for name in names]
    except SpineError:
        return None  # check_for_batch names the unknown model
    if not models or any(m.profile is not None for m in models):
        return None
    entry = models[0].entry
    if entry.batch != "native" or any(m.entry.id != entry.id for m in models):
        return None
    return NativePlan(models[0], names[0] if len(names) == 1 else entry.id)


async def choose_native(
    database: Database, registry: Registry, batch: BatchRow, input_file: FileRow
) -> bool:
    """Record `batch` as native when it may go so (True: the schedule submits it);
    False: it runs queued."""
    plan = native_plan(input_file.summary, batch.endpoint, registry)
    if plan is None:
        return False
    await native_store.insert_pending(
        await database.connection(),
        batch_id=batch.id,
        provider=plan.resolved.entry.provider.value,
        model_id=plan.resolved.entry.id,
        requested_model=plan.requested_model,
    )
    return True
