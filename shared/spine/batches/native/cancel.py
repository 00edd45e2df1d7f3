"""A native batch's cancel, forwarded to its provider from `POST
/v1/batches/{id}/cancel` (the schedule forwards it again should this fail)."""

from __future__ import annotations

from spine.errors import SpineError
from spine.observability import get_logger
from spine.pipeline.targets import target_for
from spine.providers.base import Target
from spine.providers.native_batch import NativeBatchApi, batch_api
from spine.registry.resolve import Registry
from spine.settings import Settings
from spine.storage import native_batches as native_store
from spine.storage.batches import BatchRow
from spine.storage.db import Database
from spine.storage.native_batches import NativeBatchRow

logger = get_logger(__name__)


def provider_of(
    native: NativeBatchRow, settings: Settings, registry: Registry
) -> tuple[Target, NativeBatchApi]:
    """Where the batch went, and that provider's batch API adapter."""
    entry = registry.get(native.model_id)
    if entry is None:
        raise RuntimeError(f"model '{native.model_id}' is no longer in models.yaml")
    return target_for(entry, settings), batch_api(native.provider)


async def forward_cancel(
    database: Database, settings: Settings, registry: Registry, batch: BatchRow
) -> bool:
    """Cancel a native batch at its provider; False for a queued batch. Best effort:
    should the provider be away, the next poll forwards it again."""
    native = await native_store.get(await database.connection(), batch.id)
    if native is None:
        return False
    if native.done or native.provider_batch_id is None:
        return True  # over, or not submitted yet (the schedule closes it)
    try:
        target, api = provider_of(native, settings, registry)
        await api.cancel(target, native.provider_batch_id)
    except (SpineError, RuntimeError):
        logger.warning("native batch cancel not forwarded", extra={"batch_id": batch.id})
    return True
