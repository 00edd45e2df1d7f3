"""Files and uploads (OpenAI's Files and Uploads APIs) in Postgres: metadata only,
the content is in S3 (`spine.aws.batch_objects`).

Every statement is scoped by `Owner` in its own WHERE clause, as sessions are:
another tenant's file or upload is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from spine.storage.db import Connection
from spine.storage.owner import Owner

RowT = TypeVar("RowT")
_FILE_COLUMNS = "id, purpose, filename, bytes, s3_key, summary, created_at"
_UPLOAD_COLUMNS = (
    "id, purpose, filename, bytes, mime_type, s3_key, s3_upload_id, status, parts, file_id, "
    "created_at, expires_at"
)


@dataclass(frozen=True)
class FileRow:
    id: str
    purpose: str
    filename: str
    bytes: int
    s3_key: str
    summary: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class UploadRow:
    id: str
    purpose: str
    filename: str
    bytes: int
    mime_type: str
    s3_key: str
    s3_upload_id: str
    status: str
    parts: list[dict[str, Any]]
    file_id: str | None
    created_at: datetime
    expires_at: datetime


async def insert_file(
    conn: Connection,
    owner: Owner,
    *,
    file_id: str,
    purpose: str,
    filename: str,
    size: int,
    s3_key: str,
    summary: dict[str, Any] | None,
) -> FileRow:
    cur = conn.cursor(row_factory=class_row(FileRow))
    await cur.execute(
        f"""
INSERT INTO files (id, tenant, owner, purpose, filename, bytes, s3_key, summary)
VALUES (%(id)s, %(tenant)s, %(owner)s, %(purpose)s, %(filename)s, %(bytes)s, %(s3_key)s,
        %(summary)s)
RETURNING {_FILE_COLUMNS}
""",  # noqa: S608 - constant SQL, values are parameters
        {
            **owner.params(),
            "id": file_id,
            "purpose": purpose,
            "filename": filename,
            "bytes": size,
            "s3_key": s3_key,
            "summary": None if summary is None else Jsonb(summary),
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get_file(conn: Connection, owner: Owner, file_id: str) -> FileRow | None:
    return await _owned(conn, FileRow, f"SELECT {_FILE_COLUMNS} FROM files", owner, file_id)  # noqa: S608 - constant SQL


async def list_files(
    conn: Connection, owner: Owner, *, purpose: str | None, after: str | None, limit: int
) -> list[FileRow]:
    """Newest first; `after` is the last id of the previous page."""
    cur = conn.cursor(row_factory=class_row(FileRow))
    await cur.execute(
        f"""
SELECT {_FILE_COLUMNS} FROM files
WHERE tenant = %(tenant)s AND owner = %(owner)s
  AND (%(purpose)s::text IS NULL OR purpose = %(purpose)s)
  AND (%(after)s::text IS NULL OR (created_at, id) < (
       SELECT created_at, id FROM files
       WHERE id = %(after)s AND tenant = %(tenant)s AND owner = %(owner)s))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
""",  # noqa: S608 - constant SQL, values are parameters
        {**owner.params(), "purpose": purpose, "after": after, "limit": limit},
    )
    return await cur.fetchall()


async def delete_file(conn: Connection, owner: Owner, file_id: str) -> str | None:
    """The deleted file's S3 key, or None when the owner has no such file."""
    cur = await conn.execute(
        "DELETE FROM files WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s"
        " RETURNING s3_key",
        {**owner.params(), "id": file_id},
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def insert_upload(
    conn: Connection,
    owner: Owner,
    *,
    upload_id: str,
    purpose: str,
    filename: str,
    size: int,
    mime_type: str,
    s3_key: str,
    s3_upload_id: str,
    expires_at: datetime,
) -> UploadRow:
    cur = conn.cursor(row_factory=class_row(UploadRow))
    await cur.execute(
        f"""
INSERT INTO uploads (id, tenant, owner, purpose, filename, bytes, mime_type, s3_key,
                     s3_upload_id, expires_at)
VALUES (%(id)s, %(tenant)s, %(owner)s, %(purpose)s, %(filename)s, %(bytes)s, %(mime)s,
        %(s3_key)s, %(s3_upload_id)s, %(expires_at)s)
RETURNING {_UPLOAD_COLUMNS}
""",  # noqa: S608 - constant SQL, values are parameters
        {
            **owner.params(),
            "id": upload_id,
            "purpose": purpose,
            "filename": filename,
            "bytes": size,
            "mime": mime_type,
            "s3_key": s3_key,
            "s3_upload_id": s3_upload_id,
            "expires_at": expires_at,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get_upload(conn: Connection, owner: Owner, upload_id: str) -> UploadRow | None:
    select = f"SELECT {_UPLOAD_COLUMNS} FROM uploads"  # noqa: S608 - constant SQL
    return await _owned(conn, UploadRow, select, owner, upload_id)


async def _owned(
    conn: Connection, row_type: type[RowT], select: str, owner: Owner, row_id: str
) -> RowT | None:
    """The owner's row of that id (`select` names the table and columns)."""
    cur = conn.cursor(row_factory=class_row(row_type))
    await cur.execute(
        select + " WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s",
        {**owner.params(), "id": row_id},
    )
    return await cur.fetchone()


async def add_part(conn: Connection, owner: Owner, upload_id: str, part: dict[str, Any]) -> bool:
    """Add a part (its id and size) to a pending upload; False when the upload is not
    the owner's or no longer pending."""
    cur = await conn.execute(
        """
UPDATE uploads SET parts = parts || jsonb_build_array(%(part)s::jsonb)
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s AND status = 'pending'
RETURNING id
""",
        {**owner.params(), "id": upload_id, "part": Jsonb(part)},
    )
    return await cur.fetchone() is not None


async def finish_upload(
    conn: Connection, owner: Owner, upload_id: str, *, status: str, file_id: str | None
) -> bool:
    """Move a pending upload to `status` (completed, cancelled); False when it was not
    pending (a second complete or cancel)."""
    cur = await conn.execute(
        """
UPDATE uploads SET status = %(status)s, file_id = %(file_id)s
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s AND status = 'pending'
RETURNING id
""",
        {**owner.params(), "id": upload_id, "status": status, "file_id": file_id},
    )
    return await cur.fetchone() is not None
