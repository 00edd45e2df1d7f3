"""Pipelines and their immutable versions in Postgres.

Every statement is scoped by `Owner` (tenant and principal) in its own SQL, as
prompts are: another principal's pipeline is never read, versioned or deleted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from spine.errors import ConflictError
from spine.storage.db import Connection
from spine.storage.owner import Owner

# Every statement is complete text (nothing built from strings); the columns are read
# in the order of the row classes below.

_INSERT = """
INSERT INTO pipelines (tenant, owner, slug, name, description)
VALUES (%(tenant)s, %(owner)s, %(slug)s, %(name)s, %(description)s)
RETURNING id, tenant, owner, slug, name, description, latest_version, created_at,
          updated_at
"""

_GET = """
SELECT id, tenant, owner, slug, name, description, latest_version, created_at, updated_at
FROM pipelines
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
"""

# Locks the owner's row: versions of one pipeline get consecutive numbers.
_LOCK = """
SELECT id, tenant, owner, slug, name, description, latest_version, created_at, updated_at
FROM pipelines
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
FOR UPDATE
"""

_LIST = """
SELECT id, tenant, owner, slug, name, description, latest_version, created_at, updated_at
FROM pipelines
WHERE tenant = %(tenant)s AND owner = %(owner)s
  AND (%(after)s::uuid IS NULL OR (created_at, id) < (
        SELECT created_at, id FROM pipelines AS c
        WHERE c.id = %(after)s::uuid AND c.tenant = %(tenant)s AND c.owner = %(owner)s))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""

_BUMP = """
UPDATE pipelines SET latest_version = %(version)s, updated_at = clock_timestamp()
WHERE id = %(id)s
RETURNING id, tenant, owner, slug, name, description, latest_version, created_at,
          updated_at
"""

_INSERT_VERSION = """
INSERT INTO pipeline_versions (
    pipeline_id, version, definition, step_order, description, created_by
) VALUES (
    %(pipeline_id)s, %(version)s, %(definition)s, %(step_order)s, %(description)s,
    %(created_by)s
)
RETURNING pipeline_id, version, definition, step_order, description, created_at
"""

# Through the owner's pipeline row: another principal's version is not found.
_GET_VERSION = """
SELECT v.pipeline_id, v.version, v.definition, v.step_order, v.description, v.created_at
FROM pipeline_versions AS v JOIN pipelines AS p ON p.id = v.pipeline_id
WHERE v.pipeline_id = %(id)s AND v.version = %(version)s
  AND p.tenant = %(tenant)s AND p.owner = %(owner)s
"""

_DELETE = """
DELETE FROM pipelines WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
RETURNING id
"""


@dataclass(frozen=True)
class PipelineRow:
    id: uuid.UUID
    tenant: str
    owner: str
    slug: str
    name: str
    description: str
    latest_version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PipelineVersionRow:
    pipeline_id: uuid.UUID
    version: int
    definition: dict[str, Any]
    step_order: list[str]
    description: str
    created_at: datetime


@dataclass(frozen=True)
class NewVersion:
    definition: dict[str, Any]
    step_order: tuple[str, ...]
    description: str = ""


async def create_pipeline(
    conn: Connection, owner: Owner, *, slug: str, name: str, description: str, first: NewVersion
) -> tuple[PipelineRow, PipelineVersionRow]:
    """The pipeline and its version 1, in one transaction."""
    async with conn.transaction():
        async with conn.cursor(row_factory=class_row(PipelineRow)) as cur:
            try:
                await cur.execute(
                    _INSERT,
                    {**owner.params(), "slug": slug, "name": name, "description": description},
                )
            except psycopg.errors.UniqueViolation as exc:
                raise ConflictError(
                    f"A pipeline with slug '{slug}' already exists.", param="slug"
                ) from exc
            pipeline = await cur.fetchone()
        assert pipeline is not None  # INSERT ... RETURNING
        return await _append(conn, pipeline, first, created_by=owner.subject)


async def add_version(
    conn: Connection, owner: Owner, pipeline_id: uuid.UUID, new: NewVersion
) -> tuple[PipelineRow, PipelineVersionRow] | None:
    """The owner's pipeline with `new` as its next version; None when not found."""
    async with conn.transaction():
        async with conn.cursor(row_factory=class_row(PipelineRow)) as cur:
            await cur.execute(_LOCK, {**owner.params(), "id": pipeline_id})
            pipeline = await cur.fetchone()
        if pipeline is None:
            return None
        return await _append(conn, pipeline, new, created_by=owner.subject)


async def get_pipeline(
    conn: Connection, owner: Owner, pipeline_id: uuid.UUID
) -> PipelineRow | None:
    async with conn.cursor(row_factory=class_row(PipelineRow)) as cur:
        await cur.execute(_GET, {**owner.params(), "id": pipeline_id})
        return await cur.fetchone()


async def list_pipelines(
    conn: Connection, owner: Owner, *, limit: int, after: uuid.UUID | None
) -> list[PipelineRow]:
    async with conn.cursor(row_factory=class_row(PipelineRow)) as cur:
        await cur.execute(_LIST, {**owner.params(), "limit": limit, "after": after})
        return await cur.fetchall()


async def get_version(
    conn: Connection, owner: Owner, pipeline_id: uuid.UUID, version: int
) -> PipelineVersionRow | None:
    async with conn.cursor(row_factory=class_row(PipelineVersionRow)) as cur:
        await cur.execute(_GET_VERSION, {**owner.params(), "id": pipeline_id, "version": version})
        return await cur.fetchone()


async def delete_pipeline(conn: Connection, owner: Owner, pipeline_id: uuid.UUID) -> bool:
    cur = await conn.execute(_DELETE, {**owner.params(), "id": pipeline_id})
    return await cur.fetchone() is not None


async def _append(
    conn: Connection, pipeline: PipelineRow, new: NewVersion, *, created_by: str
) -> tuple[PipelineRow, PipelineVersionRow]:
    """Insert the next version and make it the newest; the caller holds a transaction
    and the pipeline's row (locked, or just inserted)."""
    number = pipeline.latest_version + 1
    async with conn.cursor(row_factory=class_row(PipelineVersionRow)) as cur:
        await cur.execute(
            _INSERT_VERSION,
            {
                "pipeline_id": pipeline.id,
                "version": number,
                "definition": Jsonb(new.definition),
                "step_order": list(new.step_order),
                "description": new.description,
                "created_by": created_by,
            },
        )
        version = await cur.fetchone()
    async with conn.cursor(row_factory=class_row(PipelineRow)) as cur:
        await cur.execute(_BUMP, {"id": pipeline.id, "version": number})
        bumped = await cur.fetchone()
    assert version is not None and bumped is not None  # RETURNING
    return bumped, version
