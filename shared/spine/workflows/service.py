"""Pipelines: create (version 1), add a version, read, list, delete. A definition is
checked whole before anything is stored (`definition.check_definition`); a pipeline
belongs to its principal within its tenant, and anyone else gets 404."""

from __future__ import annotations

import uuid

from spine.auth.principal import Principal
from spine.errors import InvalidRequestError, NotFoundError
from spine.prompts.service import owner_of
from spine.schemas.pipelines import (
    PipelineCreate,
    PipelineDefinition,
    PipelineVersionCreate,
    PipelineVersionView,
    PipelineView,
)
from spine.storage import pipelines as store
from spine.storage.db import Database
from spine.storage.pipelines import NewVersion, PipelineRow, PipelineVersionRow
from spine.workflows.definition import check_definition


async def create_pipeline(
    database: Database, principal: Principal, body: PipelineCreate
) -> PipelineView:
    first = _checked(body.definition, body.description or "")
    conn = await database.connection()
    pipeline, version = await store.create_pipeline(
        conn,
        owner_of(principal),
        slug=body.slug,
        name=body.name or body.slug,
        description=body.description or "",
        first=first,
    )
    return pipeline_view(pipeline, version)


async def add_version(
    database: Database, principal: Principal, raw_id: str, body: PipelineVersionCreate
) -> PipelineVersionView:
    new = _checked(body.definition, body.description or "")
    pipeline_id = parse_pipeline_id(raw_id)
    conn = await database.connection()
    added = await store.add_version(conn, owner_of(principal), pipeline_id, new)
    if added is None:
        raise _not_found(raw_id)
    return version_view(added[1])


async def get_pipeline(database: Database, principal: Principal, raw_id: str) -> PipelineView:
    pipeline_id = parse_pipeline_id(raw_id)
    conn = await database.connection()
    owner = owner_of(principal)
    pipeline = await store.get_pipeline(conn, owner, pipeline_id)
    if pipeline is None:
        raise _not_found(raw_id)
    latest = await store.get_version(conn, owner, pipeline_id, pipeline.latest_version)
    return pipeline_view(pipeline, latest)


async def get_version(
    database: Database, principal: Principal, raw_id: str, number: int
) -> PipelineVersionView:
    pipeline_id = parse_pipeline_id(raw_id)
    conn = await database.connection()
    version = await store.get_version(conn, owner_of(principal), pipeline_id, number)
    if version is None:
        raise NotFoundError(
            f"Pipeline '{raw_id}' has no version {number}.", param="version", code="not_found"
        )
    return version_view(version)


async def list_pipelines(
    database: Database, principal: Principal, *, limit: int, after: str | None
) -> tuple[list[PipelineView], bool]:
    cursor = None if after is None else parse_pipeline_id(after, param="after")
    conn = await database.connection()
    rows = await store.list_pipelines(conn, owner_of(principal), limit=limit + 1, after=cursor)
    return [pipeline_view(row, None) for row in rows[:limit]], len(rows) > limit


async def delete_pipeline(database: Database, principal: Principal, raw_id: str) -> None:
    pipeline_id = parse_pipeline_id(raw_id)
    conn = await database.connection()
    if not await store.delete_pipeline(conn, owner_of(principal), pipeline_id):
        raise _not_found(raw_id)


def parse_pipeline_id(raw: str, *, param: str = "pipeline_id", what: str = "pipeline") -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidRequestError(
            f"'{param}' must be a {what} id (a UUID), got '{raw[:64]}'.",
            param=param,
            code="invalid_id",
        ) from None


# --- shapes ----------------------------------------------------------------------------


def _checked(definition: PipelineDefinition, description: str) -> NewVersion:
    checked = check_definition(definition)
    return NewVersion(
        definition=definition.model_dump(mode="json", by_alias=True, exclude_none=True),
        step_order=checked.order,
        description=description,
    )


def pipeline_view(row: PipelineRow, latest: PipelineVersionRow | None) -> PipelineView:
    return PipelineView(
        id=str(row.id),
        slug=row.slug,
        name=row.name,
        description=row.description or None,
        latest_version=row.latest_version,
        created_at=int(row.created_at.timestamp()),
        updated_at=int(row.updated_at.timestamp()),
        definition=None if latest is None else latest.definition,
    )


def version_view(row: PipelineVersionRow) -> PipelineVersionView:
    return PipelineVersionView(
        pipeline_id=str(row.pipeline_id),
        version=row.version,
        definition=row.definition,
        order=list(row.step_order),
        description=row.description or None,
        created_at=int(row.created_at.timestamp()),
    )


def _not_found(raw_id: str) -> NotFoundError:
    return NotFoundError(f"No pipeline found with id '{raw_id[:64]}'.", param="pipeline_id")
