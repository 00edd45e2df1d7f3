"""OpenAI's Files and Uploads APIs for one principal: content in S3, metadata in
Postgres (`spine.storage.files`), both scoped to the caller's tenant and subject.

A batch input file is checked line by line as it arrives (`spine.batches.validate`).
A file too large for one request body (Lambda takes 6 MB) comes through an Upload:
one S3 multipart upload whose parts arrive one request each; completing it checks
the assembled file by streaming it back from S3. Content goes back inline when small,
else as a redirect to a presigned S3 URL the client follows.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from spine.auth.principal import Principal
from spine.aws.batch_objects import MIN_PART_BYTES, ObjectStore
from spine.batches.objects import read_objects, write_object
from spine.batches.validate import FileChecker
from spine.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)
from spine.settings import BatchSettings
from spine.storage import files as store
from spine.storage.db import Database
from spine.storage.files import FileRow, UploadRow
from spine.storage.owner import Owner

UPLOAD_LIFETIME = timedelta(hours=1)  # OpenAI's: an upload not completed expires


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def owner_of(principal: Principal) -> Owner:
    """Whose files and batches these are; 401 for a caller without identity."""
    if principal.credential == "anonymous":
        raise AuthenticationError(
            "Files and batches belong to an authenticated caller: send an API key or a JWT.",
            code="identity_required",
        )
    return Owner(tenant=principal.tenant or "", subject=principal.subject)


def object_store(settings: BatchSettings) -> ObjectStore:
    if not settings.bucket:
        raise ServiceUnavailableError(
            "Files and batches are not configured here ([batch] bucket is empty).",
            code="batches_not_configured",
        )
    return ObjectStore(settings.bucket)


def file_not_found(file_id: str) -> NotFoundError:
    return NotFoundError(f"No such File object: {file_id[:100]}", param="file_id")


def check_lines(content: bytes, settings: BatchSettings) -> dict[str, Any]:
    checker = FileChecker(max_lines=settings.max_lines, max_bytes=settings.max_file_bytes)
    for line in content.splitlines(keepends=True):
        checker.feed(line)
    return checker.summary()


async def create_file(
    database: Database,
    settings: BatchSettings,
    principal: Principal,
    *,
    filename: str,
    purpose: str,
    content: bytes,
) -> FileRow:
    owner = owner_of(principal)
    if purpose != "batch":
        raise InvalidRequestError(
            f"'purpose' must be 'batch' (the files Spine keeps), got '{purpose[:64]}'.",
            param="purpose",
            code="invalid_value",
        )
    summary = check_lines(content, settings)
    objects = object_store(settings)
    file_id = new_id("file-")
    key = f"files/{file_id}"
    await asyncio.to_thread(objects.put, key, content)
    conn = await database.connection()
    return await store.insert_file(
        conn,
        owner,
        file_id=file_id,
        purpose=purpose,
        filename=filename,
        size=len(content),
        s3_key=key,
        summary=summary,
    )


async def save_output(
    database: Database, owner: Owner, *, filename: str, key: str, size: int
) -> FileRow:
    """The metadata of a file the batch function wrote (an output or error file)."""
    conn = await database.connection()
    return await store.insert_file(
        conn,
        owner,
        file_id=new_id("file-"),
        purpose="batch_output",
        filename=filename,
        size=size,
        s3_key=key,
        summary=None,
    )


async def get_file(database: Database, principal: Principal, file_id: str) -> FileRow:
    row = await store.get_file(await database.connection(), owner_of(principal), file_id)
    if row is None:
        raise file_not_found(file_id)
    return row


async def list_files(
    database: Database, principal: Principal, *, purpose: str | None, after: str | None, limit: int
) -> tuple[list[FileRow], bool]:
    rows = await store.list_files(
        await database.connection(),
        owner_of(principal),
        purpose=purpose,
        after=after,
        limit=limit + 1,
    )
    return rows[:limit], len(rows) > limit


async def delete_file(
    database: Database, settings: BatchSettings, principal: Principal, file_id: str
) -> None:
    key = await store.delete_file(await database.connection(), owner_of(principal), file_id)
    if key is None:
        raise file_not_found(file_id)
    await asyncio.to_thread(object_store(settings).delete, key)


@dataclass(frozen=True)
class Content:
    """A file's content: its bytes when small (`data`), else where to fetch it."""

    filename: str
    data: bytes | None = None
    redirect: str | None = None


async def file_content(
    database: Database, settings: BatchSettings, principal: Principal, file_id: str
) -> Content:
    row = await get_file(database, principal, file_id)
    objects = object_store(settings)
    if row.bytes > settings.inline_content_bytes:
        url = await asyncio.to_thread(
            objects.presigned_get, row.s3_key, row.filename, settings.presigned_url_seconds
        )
        return Content(row.filename, redirect=url)
    data = await asyncio.to_thread(lambda: b"".join(objects.chunks(row.s3_key)))
    return Content(row.filename, data=data)


# --- uploads --------------------------------------------------------------------------


def upload_not_found(upload_id: str) -> NotFoundError:
    return NotFoundError(f"No such Upload: {upload_id[:100]}", param="upload_id")


async def create_upload(
    database: Database,
    settings: BatchSettings,
    principal: Principal,
    *,
    filename: str,
    purpose: str,
    size: int,
    mime_type: str,
) -> UploadRow:
    owner = owner_of(principal)
    if size > settings.max_file_bytes:
        raise InvalidRequestError(
            f"'bytes' is {size}: a batch input file holds at most {settings.max_file_bytes} bytes.",
            param="bytes",
            code="file_too_large",
        )
    objects = object_store(settings)
    upload_id = new_id("upload_")
    key = f"files/{upload_id}"
    s3_upload_id = await asyncio.to_thread(objects.start_multipart, key)
    return await store.insert_upload(
        await database.connection(),
        owner,
        upload_id=upload_id,
        purpose=purpose,
        filename=filename,
        size=size,
        mime_type=mime_type,
        s3_key=key,
        s3_upload_id=s3_upload_id,
        expires_at=datetime.now(UTC) + UPLOAD_LIFETIME,
    )


async def get_upload(database: Database, principal: Principal, upload_id: str) -> UploadRow:
    row = await store.get_upload(await database.connection(), owner_of(principal), upload_id)
    if row is None:
        raise upload_not_found(upload_id)
    return row


async def add_part(
    database: Database,
    settings: BatchSettings,
    principal: Principal,
    upload_id: str,
    data: bytes,
) -> tuple[str, datetime]:
    """Send one part to S3 as the upload's next part; (part id, when)."""
    owner = owner_of(principal)
    row = await get_upload(database, principal, upload_id)
    _require_pending(row)
    if not data:
        raise InvalidRequestError("The part is empty.", param="data", code="invalid_value")
    # Each part its own object until completion: parts may come in any order and of
    # any size, which an S3 multipart upload's parts may not.
    objects = object_store(settings)
    part_id = new_id("part_")
    key = part_key(upload_id, part_id)
    await asyncio.to_thread(objects.put, key, data)
    part = {"id": part_id, "bytes": len(data)}
    if not await store.add_part(await database.connection(), owner, upload_id, part):
        await asyncio.to_thread(objects.delete, key)  # completed or cancelled meanwhile
        raise _not_pending(upload_id)
    return part_id, datetime.now(UTC)


def part_key(upload_id: str, part_id: str) -> str:
    """Where a part waits for its upload's completion (the bucket's lifecycle rule
    removes the parts of uploads never completed)."""
    return f"upload-parts/{upload_id}/{part_id}"


async def complete_upload(
    database: Database,
    settings: BatchSettings,
    principal: Principal,
    upload_id: str,
    part_ids: list[str],
) -> tuple[UploadRow, FileRow]:
    """Assemble the parts into the file, in the order `part_ids` gives, and check it
    line by line as it streams back."""
    owner = owner_of(principal)
    row = await get_upload(database, principal, upload_id)
    _require_pending(row)
    parts = {p["id"]: p for p in row.parts if "id" in p}
    if sorted(part_ids) != sorted(parts):
        raise InvalidRequestError(
            "'part_ids' must list every part of the upload once.",
            param="part_ids",
            code="invalid_value",
        )
    ordered = [parts[part_id] for part_id in part_ids]
    total = sum(int(p["bytes"]) for p in ordered)
    if total != row.bytes:
        raise InvalidRequestError(
            f"The parts hold {total} bytes; the upload was created for {row.bytes}.",
            param="part_ids",
            code="invalid_value",
        )
    objects = object_store(settings)
    await _assemble(objects, row, [part_key(upload_id, p["id"]) for p in ordered], ordered)
    await asyncio.gather(
        *(asyncio.to_thread(objects.delete, part_key(upload_id, p["id"])) for p in ordered)
    )
    try:
        summary = await asyncio.to_thread(_check_object, objects, row.s3_key, settings)
    except Exception:
        await asyncio.to_thread(objects.delete, row.s3_key)
        await store.finish_upload(
            await database.connection(), owner, upload_id, status="cancelled", file_id=None
        )
        raise
    conn = await database.connection()
    async with conn.transaction():
        if not await store.finish_upload(
            conn, owner, upload_id, status="completed", file_id=row.id.replace("upload_", "file-")
        ):
            raise _not_pending(upload_id)
        file_row = await store.insert_file(
            conn,
            owner,
            file_id=row.id.replace("upload_", "file-"),
            purpose=row.purpose,
            filename=row.filename,
            size=total,
            s3_key=row.s3_key,
            summary=summary,
        )
    done = await get_upload(database, principal, upload_id)
    return done, file_row


def _check_object(objects: ObjectStore, key: str, settings: BatchSettings) -> dict[str, Any]:
    checker = FileChecker(max_lines=settings.max_lines, max_bytes=settings.max_file_bytes)
    for line in objects.lines(key):
        checker.feed(line)
    return checker.summary()


async def cancel_upload(
    database: Database, settings: BatchSettings, principal: Principal, upload_id: str
) -> UploadRow:
    owner = owner_of(principal)
    row = await get_upload(database, principal, upload_id)
    if not await store.finish_upload(
        await database.connection(), owner, upload_id, status="cancelled", file_id=None
    ):
        raise _not_pending(upload_id)
    objects = object_store(settings)
    await asyncio.to_thread(objects.abort_multipart, row.s3_key, row.s3_upload_id)
    await asyncio.gather(
        *(
            asyncio.to_thread(objects.delete, part_key(upload_id, p["id"]))
            for p in row.parts
            if "id" in p
        )
    )
    return await get_upload(database, principal, upload_id)


async def _assemble(
    objects: ObjectStore, row: UploadRow, keys: list[str], parts: list[dict[str, Any]]
) -> None:
    """The part objects, in order, as the upload's file. Parts of S3's smallest part
    size or more (all but the last) are copied by S3 as the parts of the upload's
    multipart upload, without passing through here; smaller ones are streamed through
    into parts of that size."""
    if all(int(p["bytes"]) >= MIN_PART_BYTES for p in parts[:-1]):
        etags = [
            await asyncio.to_thread(objects.copy_part, row.s3_key, row.s3_upload_id, number, key)
            for number, key in enumerate(keys, 1)
        ]
        await asyncio.to_thread(objects.complete_multipart, row.s3_key, row.s3_upload_id, etags)
        return
    await asyncio.to_thread(objects.abort_multipart, row.s3_key, row.s3_upload_id)
    await write_object(objects, row.s3_key, read_objects(objects, keys))


def _require_pending(row: UploadRow) -> None:
    if row.status != "pending":
        raise _not_pending(row.id)
    if row.expires_at < datetime.now(UTC):
        raise InvalidRequestError(
            f"Upload {row.id} expired; create a new one.", param="upload_id", code="expired"
        )


def _not_pending(upload_id: str) -> ConflictError:
    return ConflictError(
        f"Upload {upload_id[:100]} is no longer pending.", param="upload_id", code="not_pending"
    )
