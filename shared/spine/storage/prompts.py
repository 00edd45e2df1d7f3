"""Prompts, their immutable versions and labels in Postgres.

Every read and write is scoped by `Owner` (tenant and principal) in the SQL itself:
another principal's prompt is never loaded, so it cannot leak through a code path
that forgets a check. Statements are complete and parameterized; nothing is built
from strings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from spine.errors import ConflictError, NotFoundError
from spine.schemas.prompt_content import PromptContent, Variable
from spine.storage.db import Connection
from spine.storage.owner import Owner

# Every statement reads the same columns, in the order of the row classes below.

# A prompt is a system prompt exactly when it belongs to nobody (SYSTEM_OWNER); the
# table's CHECK holds the two together.
_INSERT_PROMPT = """
INSERT INTO prompts (tenant, owner, slug, name, description, category, tags, is_system)
VALUES (%(tenant)s, %(owner)s, %(slug)s, %(name)s, %(description)s, %(category)s, %(tags)s,
        %(tenant)s = '' AND %(owner)s = '')
RETURNING id, tenant, owner, slug, name, description, latest_version, created_at, updated_at,
       is_system, category, tags
"""

# Seeding a system prompt is idempotent and safe under concurrent cold starts: the
# unique key makes a second insert wait for the first, then do nothing.
_SEED_PROMPT = """
INSERT INTO prompts (tenant, owner, slug, name, description, category, tags, is_system)
VALUES ('', '', %(slug)s, %(name)s, %(description)s, %(category)s, %(tags)s, true)
ON CONFLICT (tenant, owner, slug) DO NOTHING
RETURNING id, tenant, owner, slug, name, description, latest_version, created_at, updated_at,
       is_system, category, tags
"""

_GET_BY_ID = """
SELECT id, tenant, owner, slug, name, description, latest_version, created_at, updated_at,
       is_system, category, tags
FROM prompts
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
"""

_GET_BY_SLUG = """
SELECT id, tenant, owner, slug, name, description, latest_version, created_at, updated_at,
       is_system, category, tags
FROM prompts
WHERE tenant = %(tenant)s AND owner = %(owner)s AND slug = %(slug)s
"""

# Keyset pagination, newest first: rows strictly after the cursor row. A cursor
# that is not one of the listed prompts yields no cursor row (checked apart).
# The filters narrow one owner's prompts and its tenant's shared ones (owner '', in
# a tenant), and the system prompts when asked for:
# few rows, so the scope's index serves them.
_LIST = """
SELECT id, tenant, owner, slug, name, description, latest_version, created_at, updated_at,
       is_system, category, tags
FROM prompts AS p
WHERE ((tenant = %(tenant)s AND (owner = %(owner)s OR (owner = '' AND tenant <> '')))
       OR (%(system)s AND is_system))
  AND (%(category)s::text IS NULL OR category = %(category)s)
  AND (%(tag)s::text IS NULL OR %(tag)s = ANY (tags))
  AND (%(search)s::text IS NULL OR slug ILIKE %(search)s OR name ILIKE %(search)s
       OR description ILIKE %(search)s)
  AND (%(after)s::uuid IS NULL OR (created_at, id) < (
        SELECT created_at, id FROM prompts AS c
        WHERE c.id = %(after)s::uuid
          AND ((c.tenant = %(tenant)s
                AND (c.owner = %(owner)s OR (c.owner = '' AND c.tenant <> '')))
               OR (%(system)s AND c.is_system))))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""

_LOCK = "SELECT latest_version FROM prompts WHERE id = %(id)s FOR UPDATE"

_UPDATE_META = """
UPDATE prompts SET
    slug = coalesce(%(slug)s, slug),
    name = coalesce(%(name)s, name),
    description = coalesce(%(description)s, description),
    category = coalesce(%(category)s, category),
    tags = coalesce(%(tags)s, tags),
    updated_at = clock_timestamp()
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
RETURNING id, tenant, owner, slug, name, description, latest_version, created_at, updated_at,
       is_system, category, tags
"""

_BUMP = """
UPDATE prompts SET latest_version = %(version)s, updated_at = clock_timestamp()
WHERE id = %(id)s
RETURNING id, tenant, owner, slug, name, description, latest_version, created_at, updated_at,
       is_system, category, tags
"""

_INSERT_VERSION = """
INSERT INTO prompt_versions (
    prompt_id, version, template, variables, model, parameters, content_hash,
    rolled_back_from, created_by, system_prompt, output_schema
) VALUES (
    %(prompt_id)s, %(version)s, %(template)s, %(variables)s, %(model)s, %(parameters)s,
    %(content_hash)s, %(rolled_back_from)s, %(created_by)s, %(system_prompt)s,
    %(output_schema)s
)
RETURNING id, prompt_id, version, template, variables, model, parameters, content_hash,
       rolled_back_from, created_by, created_at, system_prompt, output_schema
"""

_GET_VERSION = """
SELECT id, prompt_id, version, template, variables, model, parameters, content_hash,
       rolled_back_from, created_by, created_at, system_prompt, output_schema FROM prompt_versions
WHERE prompt_id = %(prompt_id)s AND version = %(version)s
"""

_LIST_VERSIONS = """
SELECT id, prompt_id, version, template, variables, model, parameters, content_hash,
       rolled_back_from, created_by, created_at, system_prompt, output_schema FROM prompt_versions
WHERE prompt_id = %(prompt_id)s AND (%(before)s::integer IS NULL OR version < %(before)s)
ORDER BY version DESC
LIMIT %(limit)s
"""

_DELETE = """
DELETE FROM prompts WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
RETURNING id
"""

_LABELS = "SELECT label, version FROM prompt_labels WHERE prompt_id = %(prompt_id)s ORDER BY label"

_LABEL_VERSION = """
SELECT version FROM prompt_labels WHERE prompt_id = %(prompt_id)s AND label = %(label)s
"""

_SET_LABEL = """
INSERT INTO prompt_labels (prompt_id, label, version, updated_by)
VALUES (%(prompt_id)s, %(label)s, %(version)s, %(updated_by)s)
ON CONFLICT (prompt_id, label) DO UPDATE
SET version = excluded.version, updated_by = excluded.updated_by,
    updated_at = clock_timestamp()
"""

_DELETE_LABEL = """
DELETE FROM prompt_labels WHERE prompt_id = %(prompt_id)s AND label = %(label)s
RETURNING version
"""


@dataclass(frozen=True)
class PromptRow:
    id: uuid.UUID
    tenant: str
    owner: str
    slug: str
    name: str
    description: str
    latest_version: int
    created_at: datetime
    updated_at: datetime
    is_system: bool = False
    category: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PromptVersionRow:
    id: uuid.UUID
    prompt_id: uuid.UUID
    version: int
    template: str
    variables: list[dict[str, Any]]
    model: str | None
    parameters: dict[str, Any]
    content_hash: str
    rolled_back_from: int | None
    created_by: str
    created_at: datetime
    system_prompt: str | None = None
    output_schema: dict[str, Any] | None = None

    def content(self) -> PromptContent:
        return PromptContent(
            template=self.template,
            variables=tuple(Variable.from_json(v) for v in self.variables),
            model=self.model,
            parameters=dict(self.parameters),
            system_prompt=self.system_prompt,
            output_schema=self.output_schema,
        )


async def create_prompt(
    conn: Connection,
    owner: Owner,
    *,
    slug: str,
    name: str,
    description: str,
    content: PromptContent,
    category: str = "",
    tags: tuple[str, ...] = (),
) -> tuple[PromptRow, PromptVersionRow]:
    """The prompt and its version 1, in one transaction."""
    fields = {"slug": slug, "name": name, "description": description}
    async with conn.transaction():
        async with conn.cursor(row_factory=class_row(PromptRow)) as cur:
            try:
                await cur.execute(
                    _INSERT_PROMPT,
                    {**owner.params(), **fields, "category": category, "tags": list(tags)},
                )
            except psycopg.errors.UniqueViolation as exc:
                raise _slug_taken(slug) from exc
            prompt = await cur.fetchone()
        assert prompt is not None  # INSERT ... RETURNING
        return await _append_version(conn, prompt.id, 1, content, created_by=owner.subject)


async def import_prompt(
    conn: Connection,
    owner: Owner,
    *,
    slug: str,
    name: str,
    description: str,
    category: str,
    tags: tuple[str, ...],
    versions: list[tuple[PromptContent, int | None]],
    labels: dict[str, int],
) -> PromptRow:
    """A new prompt with `versions` (content and rolled_back_from, oldest first,
    numbered from 1) and `labels`, in one transaction."""
    async with conn.transaction():
        first, _ = versions[0]
        prompt, _ = await create_prompt(
            conn,
            owner,
            slug=slug,
            name=name,
            description=description,
            content=first,
            category=category,
            tags=tags,
        )
        for number, (content, rolled_back_from) in enumerate(versions[1:], start=2):
            prompt, _ = await _append_version(
                conn,
                prompt.id,
                number,
                content,
                created_by=owner.subject,
                rolled_back_from=rolled_back_from,
            )
        for label, number in labels.items():
            await set_label(conn, prompt.id, label, number, updated_by=owner.subject)
        return prompt


async def get_prompt(
    conn: Connection, owner: Owner, *, prompt_id: uuid.UUID | None = None, slug: str | None = None
) -> PromptRow | None:
    """The owner's prompt with this id (or slug), or None."""
    async with conn.cursor(row_factory=class_row(PromptRow)) as cur:
        if prompt_id is not None:
            await cur.execute(_GET_BY_ID, {**owner.params(), "id": prompt_id})
        else:
            await cur.execute(_GET_BY_SLUG, {**owner.params(), "slug": slug})
        return await cur.fetchone()


@dataclass(frozen=True)
class PromptFilter:
    """Which prompts a listing shows besides the owner's scope."""

    category: str | None = None
    tag: str | None = None
    # Matched case-insensitively anywhere in the slug, name or description.
    search: str | None = None
    include_system: bool = False


async def list_prompts(
    conn: Connection,
    owner: Owner,
    *,
    limit: int,
    after: uuid.UUID | None = None,
    where: PromptFilter | None = None,
) -> list[PromptRow]:
    """Up to `limit` of the owner's prompts (and the system prompts, when asked for)
    that match `where`, newest first, after the cursor."""
    where = where or PromptFilter()
    params = {
        **owner.params(),
        "after": after,
        "limit": limit,
        "system": where.include_system,
        "category": where.category,
        "tag": where.tag,
        "search": None if where.search is None else f"%{_escape_like(where.search)}%",
    }
    async with conn.cursor(row_factory=class_row(PromptRow)) as cur:
        await cur.execute(_LIST, params)
        return await cur.fetchall()


async def seed_system_prompt(
    conn: Connection,
    *,
    slug: str,
    name: str,
    description: str,
    category: str,
    tags: tuple[str, ...],
    content: PromptContent,
) -> PromptRow | None:
    """Create the system prompt `slug` with `content` as version 1 unless it exists;
    the new prompt, or None when it was there already (or another instance made it)."""
    async with conn.transaction():
        async with conn.cursor(row_factory=class_row(PromptRow)) as cur:
            await cur.execute(
                _SEED_PROMPT,
                {
                    "slug": slug,
                    "name": name,
                    "description": description,
                    "category": category,
                    "tags": list(tags),
                },
            )
            prompt = await cur.fetchone()
        if prompt is None:
            return None
        fresh, _ = await _append_version(conn, prompt.id, 1, content, created_by="system")
        return fresh


async def update_metadata(
    conn: Connection,
    owner: Owner,
    prompt_id: uuid.UUID,
    *,
    slug: str | None = None,
    name: str | None = None,
    description: str | None = None,
    category: str | None = None,
    tags: list[str] | None = None,
) -> PromptRow | None:
    """Change slug, name, description, category or tags (None: keep); never touches
    versions."""
    async with conn.cursor(row_factory=class_row(PromptRow)) as cur:
        try:
            await cur.execute(
                _UPDATE_META,
                {
                    **owner.params(),
                    "id": prompt_id,
                    "slug": slug,
                    "name": name,
                    "description": description,
                    "category": category,
                    "tags": tags,
                },
            )
        except psycopg.errors.UniqueViolation as exc:
            raise _slug_taken(slug or "") from exc
        return await cur.fetchone()


async def add_version_if_changed(
    conn: Connection,
    prompt: PromptRow,
    content: PromptContent,
    *,
    created_by: str,
    rolled_back_from: int | None = None,
) -> tuple[PromptRow, PromptVersionRow, bool]:
    """Append a version with `content` unless the newest version already has it.

    Holds the prompt row's lock while it reads the newest version and inserts the
    next one, so concurrent updates get consecutive numbers and none is lost.
    Returns the prompt, the newest version and whether it was created.
    """
    async with conn.transaction():
        cur = await conn.execute(_LOCK, {"id": prompt.id})
        locked = await cur.fetchone()
        if locked is None:
            raise _gone()
        number = int(locked[0])
        latest = await get_version(conn, prompt.id, number)
        if latest is not None and latest.content_hash == content.content_hash():
            return prompt, latest, False
        fresh, version = await _append_version(
            conn,
            prompt.id,
            number + 1,
            content,
            created_by=created_by,
            rolled_back_from=rolled_back_from,
        )
        return fresh, version, True


async def get_version(
    conn: Connection, prompt_id: uuid.UUID, version: int
) -> PromptVersionRow | None:
    async with conn.cursor(row_factory=class_row(PromptVersionRow)) as cur:
        await cur.execute(_GET_VERSION, {"prompt_id": prompt_id, "version": version})
        return await cur.fetchone()


async def list_versions(
    conn: Connection, prompt_id: uuid.UUID, *, limit: int, before: int | None = None
) -> list[PromptVersionRow]:
    """Up to `limit` versions, newest first, numbered below `before`."""
    async with conn.cursor(row_factory=class_row(PromptVersionRow)) as cur:
        await cur.execute(
            _LIST_VERSIONS, {"prompt_id": prompt_id, "before": before, "limit": limit}
        )
        return await cur.fetchall()


async def delete_prompt(conn: Connection, owner: Owner, prompt_id: uuid.UUID) -> bool:
    """Delete the prompt, its versions and labels; False when it was not the owner's."""
    cur = await conn.execute(_DELETE, {**owner.params(), "id": prompt_id})
    return cur.rowcount == 1


async def labels(conn: Connection, prompt_id: uuid.UUID) -> dict[str, int]:
    cur = await conn.execute(_LABELS, {"prompt_id": prompt_id})
    return {str(label): int(version) for label, version in await cur.fetchall()}


async def label_version(conn: Connection, prompt_id: uuid.UUID, label: str) -> int | None:
    cur = await conn.execute(_LABEL_VERSION, {"prompt_id": prompt_id, "label": label})
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def set_label(
    conn: Connection, prompt_id: uuid.UUID, label: str, version: int, *, updated_by: str
) -> None:
    """Point `label` at `version` (which must exist: the foreign key checks it)."""
    try:
        await conn.execute(
            _SET_LABEL,
            {"prompt_id": prompt_id, "label": label, "version": version, "updated_by": updated_by},
        )
    except psycopg.errors.ForeignKeyViolation as exc:
        # The version vanished (or the prompt was deleted) since the caller looked.
        raise _gone() from exc


async def delete_label(conn: Connection, prompt_id: uuid.UUID, label: str) -> bool:
    cur = await conn.execute(_DELETE_LABEL, {"prompt_id": prompt_id, "label": label})
    return cur.rowcount == 1


async def _append_version(
    conn: Connection,
    prompt_id: uuid.UUID,
    number: int,
    content: PromptContent,
    *,
    created_by: str,
    rolled_back_from: int | None = None,
) -> tuple[PromptRow, PromptVersionRow]:
    """Insert version `number` and make it the prompt's newest; the caller holds a
    transaction and, for an existing prompt, the row lock."""
    async with conn.cursor(row_factory=class_row(PromptVersionRow)) as cur:
        await cur.execute(
            _INSERT_VERSION,
            {
                "prompt_id": prompt_id,
                "version": number,
                "template": content.template,
                "variables": Jsonb([v.as_json() for v in content.variables]),
                "model": content.model,
                "parameters": Jsonb(dict(content.parameters)),
                "content_hash": content.content_hash(),
                "rolled_back_from": rolled_back_from,
                "created_by": created_by,
                "system_prompt": content.system_prompt,
                "output_schema": (
                    None if content.output_schema is None else Jsonb(dict(content.output_schema))
                ),
            },
        )
        version = await cur.fetchone()
    async with conn.cursor(row_factory=class_row(PromptRow)) as cur:
        await cur.execute(_BUMP, {"id": prompt_id, "version": number})
        bumped = await cur.fetchone()
    assert version is not None and bumped is not None  # RETURNING on rows just locked
    return bumped, version


def _escape_like(text: str) -> str:
    """`text` matched literally inside ILIKE (its default escape is the backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _slug_taken(slug: str) -> ConflictError:
    return ConflictError(
        f"A prompt with slug '{slug}' already exists.", param="slug", code="slug_taken"
    )


def _gone() -> NotFoundError:
    return NotFoundError("The prompt was deleted while this request ran.")
