"""Pipeline definitions (the prompts function: they are versioned like prompts):
create, add an immutable version, read, list, delete. Writes need `prompts:write`;
reads need only ownership (another principal's pipeline is a 404)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, StateDep
from spine.api.openapi import PAGE_QUERY, json_body
from spine.api.query import known_query, page_limit, small_int
from spine.api.routes.prompts import WriterDep
from spine.errors import InvalidRequestError
from spine.schemas.pipelines import (
    PipelineCreate,
    PipelineVersionCreate,
    PipelineVersionView,
    PipelineView,
)
from spine.schemas.prompts import MAX_VERSION
from spine.schemas.public import Deleted, ListPage
from spine.workflows import service

router = APIRouter()


@router.post("/v1/pipelines", status_code=201, openapi_extra=json_body(PipelineCreate))
async def create_pipeline(request: Request, principal: WriterDep, state: StateDep) -> PipelineView:
    body = await parse_body(request, PipelineCreate, stored=True)
    return await service.create_pipeline(state.database, principal, body)


@router.get("/v1/pipelines", openapi_extra=PAGE_QUERY)
async def list_pipelines(
    request: Request, principal: PrincipalDep, state: StateDep
) -> ListPage[PipelineView]:
    query = known_query(request, {"limit", "after"})
    views, has_more = await service.list_pipelines(
        state.database, principal, limit=page_limit(query), after=query.get("after")
    )
    return ListPage[PipelineView].of(views, has_more)


@router.get("/v1/pipelines/{pipeline_id}")
async def get_pipeline(pipeline_id: str, principal: PrincipalDep, state: StateDep) -> PipelineView:
    return await service.get_pipeline(state.database, principal, pipeline_id)


@router.delete("/v1/pipelines/{pipeline_id}")
async def delete_pipeline(pipeline_id: str, principal: WriterDep, state: StateDep) -> Deleted:
    await service.delete_pipeline(state.database, principal, pipeline_id)
    return Deleted(id=pipeline_id, object="pipeline.deleted")


@router.post(
    "/v1/pipelines/{pipeline_id}/versions",
    status_code=201,
    openapi_extra=json_body(PipelineVersionCreate),
)
async def add_version(
    pipeline_id: str, request: Request, principal: WriterDep, state: StateDep
) -> PipelineVersionView:
    body = await parse_body(request, PipelineVersionCreate, stored=True)
    return await service.add_version(state.database, principal, pipeline_id, body)


@router.get("/v1/pipelines/{pipeline_id}/versions/{version}")
async def get_version(
    pipeline_id: str, version: str, principal: PrincipalDep, state: StateDep
) -> PipelineVersionView:
    number = small_int(version)
    if number is None or not 1 <= number <= MAX_VERSION:
        raise InvalidRequestError(
            f"'version' must be a version number, got '{version[:32]}'.", param="version"
        )
    return await service.get_version(state.database, principal, pipeline_id, number)
