"""OpenAI's Files API (`/v1/files`) and Uploads API (`/v1/uploads`): thin handlers
over `spine.batches.files`. Multipart bodies are read after authentication, so an
anonymous caller gets 401 whatever it sent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, StateDep
from spine.api.openapi import json_body, query_params
from spine.api.query import epoch, known_query, page_limit
from spine.batches import files as service
from spine.errors import InvalidRequestError
from spine.schemas.batches import (
    FileDeleted,
    FilePublic,
    UploadComplete,
    UploadCreate,
    UploadPartPublic,
    UploadPublic,
)
from spine.schemas.public import ListPage
from spine.storage.files import FileRow, UploadRow

router = APIRouter()

_MULTIPART = {"multipart/form-data": {"schema": {"type": "object"}}}
_FILE_FORM = {"requestBody": {"required": True, "content": _MULTIPART}}
_FILES_QUERY = query_params(
    purpose="only files of this purpose",
    limit="page size (1 to 100)",
    after="the last id of the previous page",
)


def file_public(row: FileRow) -> FilePublic:
    return FilePublic(
        id=row.id,
        bytes=row.bytes,
        created_at=epoch(row.created_at),
        filename=row.filename,
        purpose=row.purpose,
    )


def upload_public(row: UploadRow, file: FileRow | None = None) -> UploadPublic:
    return UploadPublic(
        id=row.id,
        bytes=row.bytes,
        created_at=epoch(row.created_at),
        filename=row.filename,
        purpose=row.purpose,
        status=row.status,
        expires_at=epoch(row.expires_at),
        file=None if file is None else file_public(file),
    )


async def _form_parts(request: Request, state: Any, *names: str) -> dict[str, Any]:
    """The named fields of a multipart body (a file part as bytes and its name)."""
    limit = state.settings.batch.max_upload_body_bytes
    form = await request.form(max_files=1, max_fields=8, max_part_size=limit)
    found: dict[str, Any] = {}
    for name in names:
        value = form.get(name)
        if isinstance(value, UploadFile):
            found[name] = (value.filename or "upload.jsonl", await value.read())
        elif value is not None:
            found[name] = value
    return found


def _required(fields: dict[str, Any], name: str, *, file: bool = False) -> Any:
    value = fields.get(name)
    if value is None or (file and not isinstance(value, tuple)):
        what = "a file part" if file else "a form field"
        raise InvalidRequestError(
            f"'{name}' is required ({what} of a multipart/form-data body).",
            param=name,
            code="missing_required_parameter",
        )
    return value


@router.post("/v1/files", openapi_extra=_FILE_FORM)
async def create_file(request: Request, principal: PrincipalDep, state: StateDep) -> FilePublic:
    service.owner_of(principal)
    fields = await _form_parts(request, state, "file", "purpose")
    filename, content = _required(fields, "file", file=True)
    purpose = _required(fields, "purpose")
    if "\x00" in str(filename):  # Postgres cannot hold NUL in text (the one rule)
        raise InvalidRequestError(
            "The file's name may not contain NUL characters.",
            param="file",
            code="invalid_characters",
        )
    row = await service.create_file(
        state.database,
        state.settings.batch,
        principal,
        filename=str(filename)[:255],
        purpose=str(purpose),
        content=content,
    )
    return file_public(row)


@router.get("/v1/files", openapi_extra=_FILES_QUERY)
async def list_files(
    request: Request, principal: PrincipalDep, state: StateDep
) -> ListPage[FilePublic]:
    query = known_query(request, {"purpose", "limit", "after", "order"})
    rows, has_more = await service.list_files(
        state.database,
        principal,
        purpose=query.get("purpose"),
        after=query.get("after"),
        limit=page_limit(query),
    )
    return ListPage[FilePublic].of([file_public(row) for row in rows], has_more)


@router.get("/v1/files/{file_id}")
async def get_file(file_id: str, principal: PrincipalDep, state: StateDep) -> FilePublic:
    return file_public(await service.get_file(state.database, principal, file_id))


@router.get(
    "/v1/files/{file_id}/content",
    response_class=Response,
    responses={
        200: {
            "description": "the file's bytes",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        307: {"description": "a presigned URL of a large file's content"},
    },
)
async def file_content(file_id: str, principal: PrincipalDep, state: StateDep) -> Response:
    content = await service.file_content(state.database, state.settings.batch, principal, file_id)
    if content.redirect is not None:
        return RedirectResponse(content.redirect, status_code=307)
    return Response(
        content.data or b"",
        media_type="application/octet-stream",
        headers={"content-disposition": f'attachment; filename="{content.filename}"'},
    )


@router.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, principal: PrincipalDep, state: StateDep) -> FileDeleted:
    await service.delete_file(state.database, state.settings.batch, principal, file_id)
    return FileDeleted(id=file_id)


# --- uploads ----------------------------------------------------------------------------


@router.post("/v1/uploads", openapi_extra=json_body(UploadCreate))
async def create_upload(request: Request, principal: PrincipalDep, state: StateDep) -> UploadPublic:
    service.owner_of(principal)
    body = await parse_body(request, UploadCreate, stored=True)
    row = await service.create_upload(
        state.database,
        state.settings.batch,
        principal,
        filename=body.filename,
        purpose=body.purpose,
        size=body.bytes,
        mime_type=body.mime_type,
    )
    return upload_public(row)


@router.post("/v1/uploads/{upload_id}/parts", openapi_extra=_FILE_FORM)
async def add_upload_part(
    upload_id: str, request: Request, principal: PrincipalDep, state: StateDep
) -> UploadPartPublic:
    service.owner_of(principal)
    fields = await _form_parts(request, state, "data")
    _, data = _required(fields, "data", file=True)
    part_id, when = await service.add_part(
        state.database, state.settings.batch, principal, upload_id, data
    )
    return UploadPartPublic(id=part_id, created_at=epoch(when), upload_id=upload_id)


@router.post("/v1/uploads/{upload_id}/complete", openapi_extra=json_body(UploadComplete))
async def complete_upload(
    upload_id: str, request: Request, principal: PrincipalDep, state: StateDep
) -> UploadPublic:
    service.owner_of(principal)
    body = await parse_body(request, UploadComplete, stored=True)
    row, file_row = await service.complete_upload(
        state.database, state.settings.batch, principal, upload_id, body.part_ids
    )
    return upload_public(row, file_row)


@router.post("/v1/uploads/{upload_id}/cancel")
async def cancel_upload(upload_id: str, principal: PrincipalDep, state: StateDep) -> UploadPublic:
    row = await service.cancel_upload(state.database, state.settings.batch, principal, upload_id)
    return upload_public(row)
