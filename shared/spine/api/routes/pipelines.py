"""Pipelines (the prompts function: they are versioned like prompts): definitions
(create, add an immutable version, read, list, delete; writes need `prompts:write`)
and runs (start, read, its steps, cancel). Everything is its owner's: another
principal gets 404."""

from __future__ import annotations

from fastapi import APIRouter, Request

from spine.api.app import AppState
from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, StateDep
from spine.api.openapi import PAGE_QUERY, json_body
from spine.api.query import known_query, page_limit, small_int
from spine.api.routes.prompts import WriterDep
from spine.errors import InvalidRequestError, ServiceUnavailableError
from spine.schemas.pipelines import (
    PipelineCreate,
    PipelineVersionCreate,
    PipelineVersionView,
    PipelineView,
    RunCreate,
    RunStepList,
    RunView,
)
from spine.schemas.prompts import MAX_VERSION
from spine.schemas.public import Deleted, ListPage
from spine.workflows import runs, service

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


# --- runs ----------------------------------------------------------------------------------


def _dispatch(state: AppState) -> runs.SqsDispatch:
    queue_url = state.settings.workflows.queue_url
    if not queue_url:
        raise ServiceUnavailableError(
            "Pipeline runs need a queue, and none is configured ([workflows] queue_url).",
            code="runs_not_configured",
        )
    return runs.SqsDispatch(queue_url)


@router.post(
    "/v1/pipelines/{pipeline_id}/runs", status_code=202, openapi_extra=json_body(RunCreate)
)
async def start_run(
    pipeline_id: str, request: Request, principal: PrincipalDep, state: StateDep
) -> RunView:
    """Starts at once and answers `queued`: each ready step is a queue message."""
    body = await parse_body(request, RunCreate, stored=True)
    return await runs.start_run(
        state.database, principal, pipeline_id, body, lambda: _dispatch(state)
    )


@router.get("/v1/pipeline-runs/{run_id}")
async def get_run(run_id: str, principal: PrincipalDep, state: StateDep) -> RunView:
    return await runs.get_run(state.database, principal, run_id)


@router.get("/v1/pipeline-runs/{run_id}/steps")
async def get_run_steps(run_id: str, principal: PrincipalDep, state: StateDep) -> RunStepList:
    return RunStepList(data=await runs.get_steps(state.database, principal, run_id))


@router.post("/v1/pipeline-runs/{run_id}/cancel")
async def cancel_run(run_id: str, principal: PrincipalDep, state: StateDep) -> RunView:
    return await runs.cancel_run(state.database, principal, run_id)
