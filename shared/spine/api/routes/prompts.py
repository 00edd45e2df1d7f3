"""The prompt API: prompts, immutable versions, labels, render and execute-prompt.

Handlers are thin: parse (after authentication), call `spine.prompts.service`, shape
the response. Writes need the `prompts:write` scope (or `admin`); reads need only
ownership, which the service enforces (another principal's prompt is a 404).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from spine.api.answer_headers import call_headers
from spine.api.body import parse_body
from spine.api.deps import (
    PrincipalDep,
    RegistryDep,
    StateDep,
    built_call_context,
    require_scope,
)
from spine.api.openapi import PAGE_QUERY, json_body, query_params
from spine.api.query import epoch, known_query, page_limit, small_int
from spine.auth.principal import Principal
from spine.errors import InvalidRequestError
from spine.prompts import service, transfer
from spine.schemas.prompt_transfer import PromptExport, PromptImported
from spine.schemas.prompts import (
    LABEL_PATTERN,
    MAX_VERSION,
    ExecutedPrompt,
    ExecutedPromptRef,
    ExecutePromptRequest,
    LabelRequest,
    PromptChanged,
    PromptCreate,
    PromptLabelDeleted,
    PromptLabelSet,
    PromptPublic,
    PromptSummary,
    PromptUpdate,
    PromptVersionPage,
    PromptVersionPublic,
    RenderedMessage,
    RenderedPrompt,
    RenderRequest,
    RollbackRequest,
)
from spine.schemas.public import Deleted, ListPage
from spine.storage.prompts import PromptFilter, PromptRow, PromptVersionRow

router = APIRouter()

VERSION_QUERY = query_params(version="a version number", label="a label")

WRITE_SCOPE = "prompts:write"


# Writes need the scope (admin holds every scope); reads need only ownership.
WriterDep = Annotated[Principal, Depends(require_scope(WRITE_SCOPE))]


# --- prompts ------------------------------------------------------------------------


@router.post("/v1/prompts", status_code=201, openapi_extra=json_body(PromptCreate))
async def create_prompt(request: Request, principal: WriterDep, state: StateDep) -> PromptPublic:
    body = await parse_body(request, PromptCreate, stored=True)
    return prompt_public(await service.create_prompt(state.database, principal, body))


LIST_QUERY = query_params(
    limit="page size (1 to 100)",
    after="the last id of the previous page",
    category="only prompts of this category",
    tag="only prompts with this tag",
    search="only prompts whose slug, name or description contains this text",
    include_system="true: the system prompts too",
)


@router.get("/v1/prompts", openapi_extra=LIST_QUERY)
async def list_prompts(
    request: Request, principal: PrincipalDep, state: StateDep
) -> ListPage[PromptSummary]:
    query = known_query(request, {"limit", "after", "category", "tag", "search", "include_system"})
    rows, has_more = await service.list_prompts(
        state.database,
        principal,
        limit=page_limit(query),
        after=query.get("after"),
        where=_list_filter(query),
    )
    return ListPage[PromptSummary].of([prompt_summary(row) for row in rows], has_more)


@router.get("/v1/prompts/{ref}", openapi_extra=VERSION_QUERY)
async def get_prompt(
    ref: str, request: Request, principal: PrincipalDep, state: StateDep
) -> PromptPublic:
    query = known_query(request, {"version", "label"})
    version = _version_number(query["version"]) if "version" in query else None
    label = _label(query["label"]) if "label" in query else None
    if version is not None and label is not None:
        raise InvalidRequestError("Send 'version' or 'label', not both.", param="label")
    return prompt_public(
        await service.get_prompt(state.database, principal, ref, version=version, label=label)
    )


@router.patch("/v1/prompts/{ref}", openapi_extra=json_body(PromptUpdate))
async def update_prompt(
    ref: str, request: Request, principal: WriterDep, state: StateDep
) -> PromptChanged:
    body = await parse_body(request, PromptUpdate, stored=True)
    view, created = await service.update_prompt(state.database, principal, ref, body)
    return prompt_changed(view, created)


@router.delete("/v1/prompts/{ref}")
async def delete_prompt(ref: str, principal: WriterDep, state: StateDep) -> Deleted:
    prompt_id = await service.delete_prompt(state.database, principal, ref)
    return Deleted(id=str(prompt_id), object="prompt.deleted")


# --- export and import --------------------------------------------------------------


@router.get("/v1/prompts/{ref}/export")
async def export_prompt(ref: str, principal: PrincipalDep, state: StateDep) -> PromptExport:
    return await transfer.export_prompt(state.database, principal, ref)


@router.post("/v1/prompts/import", status_code=201, openapi_extra=json_body(PromptExport))
async def import_prompts(request: Request, principal: WriterDep, state: StateDep) -> PromptImported:
    document = await parse_body(request, PromptExport, stored=True)
    rows = await transfer.import_prompts(state.database, principal, document)
    return PromptImported(ids=[str(row.id) for row in rows], slugs=[row.slug for row in rows])


# --- versions -----------------------------------------------------------------------


@router.get("/v1/prompts/{ref}/versions", openapi_extra=PAGE_QUERY)
async def list_versions(
    ref: str, request: Request, principal: PrincipalDep, state: StateDep
) -> PromptVersionPage:
    query = known_query(request, {"limit", "after"})
    # Newest first, so "after" a version means older ones: numbers below it.
    before = _version_number(query["after"], param="after") if "after" in query else None
    _, rows, has_more = await service.list_versions(
        state.database, principal, ref, limit=page_limit(query), before=before
    )
    return PromptVersionPage(
        data=[version_public(row) for row in rows],
        first_id=rows[0].version if rows else None,
        last_id=rows[-1].version if rows else None,
        has_more=has_more,
    )


@router.get("/v1/prompts/{ref}/versions/{number}")
async def get_version(
    ref: str, number: str, principal: PrincipalDep, state: StateDep
) -> PromptVersionPublic:
    return version_public(
        await service.get_version(state.database, principal, ref, _version_number(number))
    )


@router.post("/v1/prompts/{ref}/rollback", openapi_extra=json_body(RollbackRequest))
async def rollback(
    ref: str, request: Request, principal: WriterDep, state: StateDep
) -> PromptChanged:
    body = await parse_body(request, RollbackRequest, stored=True)
    view, created = await service.rollback(state.database, principal, ref, body.version)
    return prompt_changed(view, created)


# --- labels -------------------------------------------------------------------------


@router.put("/v1/prompts/{ref}/labels/{label}", openapi_extra=json_body(LabelRequest))
async def set_label(
    ref: str, label: str, request: Request, principal: WriterDep, state: StateDep
) -> PromptLabelSet:
    checked = _label(label)
    body = await parse_body(request, LabelRequest, stored=True)
    view = await service.set_label(state.database, principal, ref, checked, body.version)
    return PromptLabelSet(
        prompt_id=str(view.prompt.id), label=checked, version=body.version, labels=view.labels
    )


@router.delete("/v1/prompts/{ref}/labels/{label}")
async def delete_label(
    ref: str, label: str, principal: WriterDep, state: StateDep
) -> PromptLabelDeleted:
    checked = _label(label)
    prompt = await service.delete_label(state.database, principal, ref, checked)
    return PromptLabelDeleted(prompt_id=str(prompt.id), label=checked)


# --- render and execute -------------------------------------------------------------


@router.post("/v1/prompts/{ref}/render", openapi_extra=json_body(RenderRequest))
async def render(
    ref: str, request: Request, principal: PrincipalDep, state: StateDep
) -> RenderedPrompt:
    body = await parse_body(request, RenderRequest)
    rendered = await service.render_prompt(
        state.database, principal, ref, body.variables, version=body.version, label=body.label
    )
    return RenderedPrompt(
        prompt_id=str(rendered.prompt.id),
        version=rendered.version.version,
        version_id=str(rendered.version.id),
        text=rendered.text,
        messages=[RenderedMessage(**message) for message in service.messages_of(rendered)],
    )


# JSONResponse: the completion is written by json.dumps as the chat routes write it
# (pydantic writes small floats, as in logprobs, in another form: 1e-6 for 1e-06).
@router.post(
    "/v1/execute-prompt",
    response_class=JSONResponse,
    openapi_extra=json_body(ExecutePromptRequest),
)
async def execute_prompt(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    state: StateDep,
    registry: RegistryDep,
) -> ExecutedPrompt:
    body = await parse_body(request, ExecutePromptRequest)
    execution = await service.prepare_execution(state.database, principal, body)
    # Admitted on what runs: the model is often the stored version's, not the body's.
    ctx = await built_call_context(request, state, principal, registry, execution.request)
    completion, result = await service.execute(execution, ctx)
    rendered = execution.rendered
    response.headers.update(
        call_headers(result) | {"x-spine-prompt-version-id": str(rendered.version.id)}
    )
    # The completion's fields as they are (already checked), plus the version it ran.
    return ExecutedPrompt.model_construct(
        **dict(completion),
        prompt=ExecutedPromptRef(
            id=str(rendered.prompt.id),
            slug=rendered.prompt.slug,
            version=rendered.version.version,
            version_id=str(rendered.version.id),
        ),
    )


# --- response shapes (API objects, mapped explicitly from rows) ---------------------


def prompt_summary(row: PromptRow) -> PromptSummary:
    return PromptSummary(
        id=str(row.id),
        slug=row.slug,
        name=row.name,
        description=row.description,
        latest_version=row.latest_version,
        created_at=epoch(row.created_at),
        updated_at=epoch(row.updated_at),
        is_system=row.is_system,
        shared=not row.owner and bool(row.tenant),
        category=row.category,
        tags=list(row.tags),
    )


def prompt_public(view: service.PromptView) -> PromptPublic:
    return PromptPublic(
        **dict(prompt_summary(view.prompt)),
        labels=view.labels,
        version=version_public(view.version),
    )


def prompt_changed(view: service.PromptView, created: bool) -> PromptChanged:
    return PromptChanged(**dict(prompt_public(view)), version_created=created)


def version_public(row: PromptVersionRow) -> PromptVersionPublic:
    return PromptVersionPublic(
        id=str(row.id),
        prompt_id=str(row.prompt_id),
        version=row.version,
        template=row.template,
        variables=row.variables,
        model=row.model,
        parameters=row.parameters,
        system_prompt=row.system_prompt,
        output_schema=row.output_schema,
        content_hash=row.content_hash,
        rolled_back_from=row.rolled_back_from,
        created_by=row.created_by,
        created_at=epoch(row.created_at),
    )


# --- query and path parameters ------------------------------------------------------


def _list_filter(query: dict[str, str]) -> PromptFilter:
    for name in ("category", "tag"):
        if name in query and re.fullmatch(LABEL_PATTERN, query[name]) is None:
            raise InvalidRequestError(
                f"Invalid '{name}': lowercase letters, digits, '.', '-' and '_' "
                "(at most 64 characters).",
                param=name,
                code="invalid_value",
            )
    search = query.get("search")
    if search is not None and not (1 <= len(search) <= 200 and "\x00" not in search):
        raise InvalidRequestError(
            "'search' must be 1 to 200 characters, without NUL.",
            param="search",
            code="invalid_value",
        )
    system = query.get("include_system", "false")
    if system not in ("true", "false"):
        raise InvalidRequestError(
            "'include_system' must be true or false.", param="include_system", code="invalid_value"
        )
    return PromptFilter(
        category=query.get("category"),
        tag=query.get("tag"),
        search=search,
        include_system=system == "true",
    )


def _version_number(raw: str, *, param: str = "version") -> int:
    value = small_int(raw)
    if value is None or not 1 <= value <= MAX_VERSION:
        raise InvalidRequestError(
            f"'{param}' must be a version number (an integer from 1), got '{raw[:32]}'.",
            param=param,
            code="invalid_value",
        )
    return value


def _label(raw: str) -> str:
    if re.fullmatch(LABEL_PATTERN, raw) is None:
        raise InvalidRequestError(
            "Invalid label: use lowercase letters, digits, '.', '-' and '_' "
            "(at most 64 characters).",
            param="label",
            code="invalid_value",
        )
    return raw
