"""OpenAI's Batch API (`/v1/batches`): thin handlers over `spine.batches.service`."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request

from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, RegistryDep, StateDep
from spine.api.openapi import PAGE_QUERY, json_body
from spine.api.query import epoch, known_query, page_limit
from spine.batches import service
from spine.batches.files import owner_of
from spine.schemas.batches import BatchCreate, BatchErrors, BatchPublic, RequestCounts
from spine.schemas.public import ListPage
from spine.storage.batches import BatchRow

router = APIRouter()


def _when(moment: datetime | None) -> int | None:
    return None if moment is None else epoch(moment)


def batch_public(row: BatchRow) -> BatchPublic:
    return BatchPublic(
        id=row.id,
        endpoint=row.endpoint,
        errors=None if row.errors is None else BatchErrors.model_validate(row.errors),
        input_file_id=row.input_file_id,
        completion_window=row.completion_window,
        status=row.status,
        output_file_id=row.output_file_id,
        error_file_id=row.error_file_id,
        created_at=epoch(row.created_at),
        in_progress_at=_when(row.in_progress_at),
        expires_at=_when(row.expires_at),
        finalizing_at=_when(row.finalizing_at),
        completed_at=_when(row.completed_at),
        failed_at=_when(row.failed_at),
        expired_at=_when(row.expired_at),
        cancelling_at=_when(row.cancelling_at),
        cancelled_at=_when(row.cancelled_at),
        # Lines cancelled before they ran are neither completed nor failed (OpenAI's).
        request_counts=RequestCounts(total=row.total, completed=row.completed, failed=row.failed),
        metadata=row.metadata,
    )


@router.post("/v1/batches", openapi_extra=json_body(BatchCreate))
async def create_batch(
    request: Request, principal: PrincipalDep, state: StateDep, registry: RegistryDep
) -> BatchPublic:
    owner_of(principal)
    body = await parse_body(request, BatchCreate, stored=True)
    row = await service.create_batch(
        state.database, state.settings.batch, registry, principal, body
    )
    return batch_public(row)


@router.get("/v1/batches", openapi_extra=PAGE_QUERY)
async def list_batches(
    request: Request, principal: PrincipalDep, state: StateDep
) -> ListPage[BatchPublic]:
    query = known_query(request, {"limit", "after"})
    rows, has_more = await service.list_batches(
        state.database, principal, after=query.get("after"), limit=page_limit(query)
    )
    return ListPage[BatchPublic].of([batch_public(row) for row in rows], has_more)


@router.get("/v1/batches/{batch_id}")
async def get_batch(batch_id: str, principal: PrincipalDep, state: StateDep) -> BatchPublic:
    return batch_public(await service.get_batch(state.database, principal, batch_id))


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(
    batch_id: str, principal: PrincipalDep, state: StateDep, registry: RegistryDep
) -> BatchPublic:
    row = await service.cancel_batch(
        state.database, state.settings.batch, principal, batch_id, registry
    )
    return batch_public(row)
