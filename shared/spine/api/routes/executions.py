"""GET /v1/executions: the log of capability calls and prompt executions, read from
the usage ledger (tenant-isolated like /v1/usage)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from spine.api.deps import PrincipalDep, StateDep
from spine.api.openapi import query_params
from spine.api.query import epoch, parse_query
from spine.schemas.executions import CAPABILITY_ENDPOINT_PREFIX, ExecutionPublic, ExecutionsQuery
from spine.schemas.public import ListPage
from spine.storage.executions import ExecutionRow
from spine.usage.executions import read_executions

router = APIRouter()


@router.get("/v1/executions", openapi_extra=query_params(ExecutionsQuery))
async def executions(
    request: Request, principal: PrincipalDep, state: StateDep
) -> ListPage[ExecutionPublic]:
    query = parse_query(request, ExecutionsQuery)
    rows, has_more = await read_executions(state.database, principal, query)
    return ListPage[ExecutionPublic].of([execution_public(row) for row in rows], has_more)


def execution_public(row: ExecutionRow) -> ExecutionPublic:
    capability = row.endpoint.removeprefix(CAPABILITY_ENDPOINT_PREFIX)
    return ExecutionPublic(
        id=row.request_id,
        created_at=epoch(row.created_at),
        capability=capability if capability != row.endpoint else None,
        endpoint=row.endpoint,
        prompt=row.prompt_slug,
        prompt_version=row.prompt_version,
        prompt_version_id=None if row.prompt_version_id is None else str(row.prompt_version_id),
        model=row.model,
        resolved_model=row.resolved_model,
        provider=row.provider,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cost_usd=float(row.cost_usd),
        latency_ms=row.latency_ms,
        status=row.status,
        error_code=row.error_code,
        cache_hit=row.cache_hit,
    )
