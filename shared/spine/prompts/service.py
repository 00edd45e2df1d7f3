"""Prompt operations for one principal: create, read, version, label, render, run.

Ownership: every lookup is scoped by the caller's tenant and subject (in SQL, see
`spine.storage.prompts`), so another principal's prompt is "not found", never
"forbidden": its existence is not revealed. Write permission (a scope) is the HTTP
layer's business; this module trusts its caller on that.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from spine.auth.principal import Principal
from spine.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from spine.pipeline import run
from spine.pipeline.context import CallContext, CallResult
from spine.pipeline.kinds import CHAT
from spine.prompts.templates import declare, redeclare, render, variables_of
from spine.schemas.openai import ChatCompletion, ChatCompletionRequest
from spine.schemas.prompt_content import PromptContent
from spine.schemas.prompts import (
    LATEST_LABEL,
    METADATA_FIELDS,
    SLUG_PATTERN,
    ExecutePromptRequest,
    PromptCreate,
    PromptUpdate,
)
from spine.storage import db
from spine.storage import prompts as store
from spine.storage.db import Database
from spine.storage.owner import SYSTEM_OWNER, Owner, tenant_owner
from spine.storage.prompts import PromptFilter, PromptRow, PromptVersionRow

# Chat request fields a prompt's parameters may not set: execute-prompt supplies
# them (model, messages) or does not support them (streaming, sessions).
_RESERVED_PARAMETERS = ("model", "messages", "stream", "stream_options", "session_id")
_SLUG_OR_ID = "prompt_id"


@dataclass(frozen=True)
class PromptView:
    """A prompt with one of its versions (the newest unless asked otherwise)."""

    prompt: PromptRow
    version: PromptVersionRow
    labels: dict[str, int]


@dataclass(frozen=True)
class Rendered:
    prompt: PromptRow
    version: PromptVersionRow
    text: str


def owner_of(principal: Principal) -> Owner:
    if not principal.subject:
        # An empty subject is the system prompts' owner: no caller may pose as it.
        raise AuthenticationError("The credential names no subject.")
    return Owner(tenant=principal.tenant or "", subject=principal.subject)


def _shared_owner(principal: Principal) -> Owner:
    """Where a tenant's shared prompt goes: only a tenant's admin creates one."""
    if not principal.tenant:
        raise InvalidRequestError(
            "A shared prompt belongs to a tenant, and this credential has none.",
            param="shared",
        )
    if not principal.has_scope("admin"):
        raise PermissionDeniedError(
            "Only an admin of the tenant creates its shared prompts.",
            param="shared",
            code="insufficient_scope",
        )
    return tenant_owner(principal.tenant)


def readable_owners(principal: Principal) -> list[Owner]:
    """Whose prompts the caller reads, most specific first: its own, its tenant's
    shared ones, the system prompts."""
    own = owner_of(principal)
    shared = [tenant_owner(principal.tenant)] if principal.tenant else []
    return [own, *shared, SYSTEM_OWNER]


def owner_of_row(prompt: PromptRow) -> Owner:
    """Who owns `prompt` (SYSTEM_OWNER for a system prompt): writes are scoped by it."""
    return Owner(tenant=prompt.tenant, subject=prompt.owner)


async def create_prompt(database: Database, principal: Principal, body: PromptCreate) -> PromptView:
    content = _content(body)
    conn = await database.connection()
    prompt, version = await store.create_prompt(
        conn,
        _shared_owner(principal) if body.shared else owner_of(principal),
        slug=body.slug,
        name=body.name if body.name is not None else body.slug,
        description=body.description,
        content=content,
        category=body.category,
        tags=tuple(body.tags),
    )
    return PromptView(prompt, version, {})


async def list_prompts(
    database: Database,
    principal: Principal,
    *,
    limit: int,
    after: str | None,
    where: PromptFilter | None = None,
) -> tuple[list[PromptRow], bool]:
    """A page of the caller's prompts and its tenant's shared ones (and the system
    prompts, when asked for) that match `where`, newest first, and whether more
    follow."""
    owner = owner_of(principal)
    conn = await database.connection()
    cursor = None
    if after is not None:
        cursor = _parse_uuid(after, param="after")
        if await _get_readable(conn, principal, prompt_id=cursor) is None:
            raise InvalidRequestError(
                f"'after' is not one of your prompts: {after}", param="after", code="invalid_cursor"
            )
    rows = await store.list_prompts(conn, owner, limit=limit + 1, after=cursor, where=where)
    return rows[:limit], len(rows) > limit


async def find_prompt(
    database: Database, principal: Principal, ref: str, *, write: bool = False
) -> PromptRow:
    """The prompt named by id or slug that the caller may read: its own, else a
    system prompt of that id or slug; 404 for anyone else's. With `write`, a system
    prompt needs the `admin` scope (403 otherwise: its existence is no secret)."""
    conn = await database.connection()
    prompt_id = _as_uuid(ref)
    slug = None if prompt_id is not None else _checked_slug(ref)
    prompt = await _get_readable(conn, principal, prompt_id=prompt_id, slug=slug)
    if prompt is None:
        raise NotFoundError(f"No prompt found with id or slug '{ref}'.", param=_SLUG_OR_ID)
    if write and not prompt.owner and not principal.has_scope("admin"):
        kind = "a system prompt" if prompt.is_system else "the tenant's shared prompt"
        raise PermissionDeniedError(
            f"'{prompt.slug}' is {kind}: only admins change it. Create your own "
            "prompt with this slug to override it for your calls.",
            param=_SLUG_OR_ID,
            code="system_prompt" if prompt.is_system else "shared_prompt",
        )
    return prompt


async def _get_readable(
    conn: db.Connection,
    principal: Principal,
    *,
    prompt_id: uuid.UUID | None = None,
    slug: str | None = None,
) -> PromptRow | None:
    """The caller's prompt of that id or slug, else its tenant's shared one, else the
    system prompt."""
    for owner in readable_owners(principal):
        found = await store.get_prompt(conn, owner, prompt_id=prompt_id, slug=slug)
        if found is not None:
            return found
    return None


async def get_prompt(
    database: Database,
    principal: Principal,
    ref: str,
    *,
    version: int | None = None,
    label: str | None = None,
) -> PromptView:
    prompt = await find_prompt(database, principal, ref)
    conn = await database.connection()
    chosen = await _resolve_version(database, conn, prompt, version=version, label=label)
    return PromptView(prompt, chosen, await store.labels(conn, prompt.id))


async def update_prompt(
    database: Database, principal: Principal, ref: str, body: PromptUpdate
) -> tuple[PromptView, bool]:
    """Apply metadata edits; append a version only if the content changed. Returns
    the prompt with its newest version and whether a version was created."""
    prompt = await find_prompt(database, principal, ref, write=True)
    owner = owner_of_row(prompt)
    conn = await database.connection()
    if METADATA_FIELDS & body.model_fields_set:
        updated = await store.update_metadata(
            conn,
            owner,
            prompt.id,
            slug=body.slug,
            name=body.name,
            description=body.description,
            category=body.category,
            tags=body.tags,
        )
        if updated is None:
            raise NotFoundError(f"No prompt found with id or slug '{ref}'.", param=_SLUG_OR_ID)
        prompt = updated
    latest = await _version_or_404(conn, prompt, prompt.latest_version)
    created = False
    if body.changes_content():
        content = _updated_content(latest.content(), body)
        prompt, latest, created = await store.add_version_if_changed(
            conn, prompt, content, created_by=principal.subject
        )
    return PromptView(prompt, latest, await store.labels(conn, prompt.id)), created


async def delete_prompt(database: Database, principal: Principal, ref: str) -> uuid.UUID:
    prompt = await find_prompt(database, principal, ref, write=True)
    conn = await database.connection()
    if not await store.delete_prompt(conn, owner_of_row(prompt), prompt.id):
        raise NotFoundError(f"No prompt found with id or slug '{ref}'.", param=_SLUG_OR_ID)
    return prompt.id


async def list_versions(
    database: Database, principal: Principal, ref: str, *, limit: int, before: int | None
) -> tuple[PromptRow, list[PromptVersionRow], bool]:
    prompt = await find_prompt(database, principal, ref)
    conn = await database.connection()
    rows = await store.list_versions(conn, prompt.id, limit=limit + 1, before=before)
    return prompt, rows[:limit], len(rows) > limit


async def get_version(
    database: Database, principal: Principal, ref: str, number: int
) -> PromptVersionRow:
    prompt = await find_prompt(database, principal, ref)
    return await _version_or_404(await database.connection(), prompt, number)


async def rollback(
    database: Database, principal: Principal, ref: str, number: int
) -> tuple[PromptView, bool]:
    """Make version `number`'s content the newest again by appending a copy of it
    (history stays append-only). Nothing is appended when the newest version
    already has that content."""
    prompt = await find_prompt(database, principal, ref, write=True)
    conn = await database.connection()
    target = await _version_or_404(conn, prompt, number)
    prompt, latest, created = await store.add_version_if_changed(
        conn, prompt, target.content(), created_by=principal.subject, rolled_back_from=number
    )
    return PromptView(prompt, latest, await store.labels(conn, prompt.id)), created


async def set_label(
    database: Database, principal: Principal, ref: str, label: str, number: int
) -> PromptView:
    if label == LATEST_LABEL:
        raise InvalidRequestError(
            f"'{LATEST_LABEL}' always means the newest version and cannot be set.",
            param="label",
            code="reserved_label",
        )
    prompt = await find_prompt(database, principal, ref, write=True)
    conn = await database.connection()
    version = await _version_or_404(conn, prompt, number)
    await store.set_label(conn, prompt.id, label, number, updated_by=principal.subject)
    return PromptView(prompt, version, await store.labels(conn, prompt.id))


async def delete_label(database: Database, principal: Principal, ref: str, label: str) -> PromptRow:
    prompt = await find_prompt(database, principal, ref, write=True)
    if not await store.delete_label(await database.connection(), prompt.id, label):
        raise NotFoundError(f"Prompt '{ref}' has no label '{label}'.", param="label")
    return prompt


async def render_prompt(
    database: Database,
    principal: Principal,
    ref: str,
    values: Mapping[str, Any],
    *,
    version: int | None = None,
    label: str | None = None,
) -> Rendered:
    prompt = await find_prompt(database, principal, ref)
    conn = await database.connection()
    chosen = await _resolve_version(database, conn, prompt, version=version, label=label)
    return Rendered(prompt, chosen, render(chosen.content(), values))


@dataclass(frozen=True)
class Execution:
    """A prompt rendered into the chat request it runs as (admitted on that request)."""

    request: ChatCompletionRequest
    rendered: Rendered


async def prepare_execution(
    database: Database, principal: Principal, body: ExecutePromptRequest
) -> Execution:
    """Render the prompt into one user message with the version's model and parameters
    (the request's win): the call to admit and run."""
    rendered = await render_prompt(
        database, principal, body.prompt, body.variables, version=body.version, label=body.label
    )
    version = rendered.version
    model = body.model or version.model
    if model is None:
        raise InvalidRequestError(
            "Missing required parameter: 'model' (this prompt version has no default model).",
            param="model",
            code="missing_required_parameter",
        )
    _check_parameter_names(body.parameters)
    request = _chat_request(
        {**version.parameters, **body.parameters},
        model=model,
        messages=messages_of(rendered),
    )
    return Execution(request, rendered)


def messages_of(rendered: Rendered) -> list[dict[str, str]]:
    """The version's system prompt (if any), then the rendered text as the user's."""
    system = rendered.version.system_prompt
    user = [{"role": "user", "content": rendered.text}]
    return user if system is None else [{"role": "system", "content": system}, *user]


async def execute(execution: Execution, ctx: CallContext) -> tuple[ChatCompletion, CallResult]:
    """Run the rendered prompt through the pipeline; the usage row records the version."""
    run_ctx = replace(ctx, prompt_version_id=str(execution.rendered.version.id))
    return await run.answer(CHAT, execution.request, run_ctx)


# --- helpers ------------------------------------------------------------------------


def _content(body: PromptCreate) -> PromptContent:
    variables = declare(body.template, variables_of(body.variables))
    parameters = dict(body.parameters)
    check_parameters(parameters)
    return PromptContent(
        body.template,
        variables,
        body.model,
        parameters,
        system_prompt=body.system_prompt,
        output_schema=body.output_schema,
    )


def _updated_content(previous: PromptContent, body: PromptUpdate) -> PromptContent:
    fields = body.model_fields_set
    template = body.template if body.template is not None else previous.template
    if body.variables is not None:
        variables = declare(template, variables_of(body.variables))
    else:
        variables = redeclare(template, previous.variables)
    model = body.model if "model" in fields else previous.model
    parameters = (
        dict(body.parameters)
        if "parameters" in fields and body.parameters is not None
        else dict(previous.parameters)
    )
    check_parameters(parameters)
    return PromptContent(
        template,
        variables,
        model,
        parameters,
        system_prompt=body.system_prompt if "system_prompt" in fields else previous.system_prompt,
        output_schema=body.output_schema if "output_schema" in fields else previous.output_schema,
    )


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """The parameters must be valid fields of a chat request (400 naming the first
    bad one), so a bad default fails when it is stored, not when it runs. Unlike a
    chat request's, a stored prompt's fields must be ones Spine knows: a typo would
    otherwise sit in every call it makes."""
    _check_parameter_names(parameters)
    known = ChatCompletionRequest.model_fields
    for name in parameters:
        if name not in known:
            raise InvalidRequestError(
                f"Unrecognized request argument supplied: {name}",
                param=f"parameters.{name}",
                code="unknown_parameter",
            )
    _chat_request(parameters, model="prompt-check", messages=[{"role": "user", "content": "x"}])


def _check_parameter_names(parameters: Mapping[str, Any]) -> None:
    for name in parameters:
        if name in _RESERVED_PARAMETERS:
            raise InvalidRequestError(
                f"'{name}' cannot be a prompt parameter.",
                param=f"parameters.{name}",
                code="unsupported_parameter",
            )


def _chat_request(
    parameters: Mapping[str, Any], *, model: str, messages: list[dict[str, str]]
) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(
            {**parameters, "model": model, "messages": messages}
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(part) for part in first["loc"])
        where = loc if loc in ("model", "messages") or loc.startswith("messages.") else None
        param = where or f"parameters.{loc}"
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "not a chat completion parameter"
        raise InvalidRequestError(
            f"Invalid value for '{param}': {message}", param=param, code="invalid_value"
        ) from exc


async def _resolve_version(
    database: Database,
    conn: db.Connection,
    prompt: PromptRow,
    *,
    version: int | None,
    label: str | None,
) -> PromptVersionRow:
    if version is not None:
        return await _version_or_404(conn, prompt, version)
    if label is not None and label != LATEST_LABEL:
        number = await store.label_version(conn, prompt.id, label)
        if number is None:
            raise NotFoundError(f"Prompt '{prompt.slug}' has no label '{label}'.", param="label")
        return await _version_or_404(conn, prompt, number)
    return await _version_or_404(conn, prompt, prompt.latest_version)


async def _version_or_404(conn: db.Connection, prompt: PromptRow, number: int) -> PromptVersionRow:
    row = await store.get_version(conn, prompt.id, number)
    if row is None:
        raise NotFoundError(f"Prompt '{prompt.slug}' has no version {number}.", param="version")
    return row


def _as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def _parse_uuid(value: str, *, param: str) -> uuid.UUID:
    parsed = _as_uuid(value)
    if parsed is None:
        raise InvalidRequestError(f"'{param}' must be a prompt id (UUID).", param=param)
    return parsed


def _checked_slug(ref: str) -> str:
    if re.fullmatch(SLUG_PATTERN, ref) is None:
        raise InvalidRequestError(
            "Invalid prompt id or slug: expected a UUID or a slug of lowercase letters, "
            "digits, '-' and '_' (at most 128 characters).",
            param=_SLUG_OR_ID,
            code="invalid_id",
        )
    return ref
