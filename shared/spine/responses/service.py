"""Responses API calls for one principal: open a call (the earlier turns loaded from
`previous_response_id`), answer it through the pipeline, store it; read, list and
delete stored responses.

Ownership: as chat sessions, every statement is scoped by the caller's tenant and
subject (`spine.storage.responses`), so another principal's response is "not found"
(404), never "forbidden". The anonymous principal of a `verify_jwt = false` function
is one owner: its callers share their stored responses, as they share everything else.

Nothing is stored for a request that is refused or whose provider call fails: the
response is written after the answer and before it is sent (for a stream, before its
`response.completed` event), so the very next request can name it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from spine.auth.principal import Principal
from spine.errors import InvalidRequestError, NotFoundError
from spine.pipeline import run
from spine.pipeline.context import CallContext, CallResult
from spine.pipeline.responses_answer import RESPONSE_ID_PREFIX, ResponseDraft
from spine.pipeline.responses_chat import (
    ResponsesChatRequest,
    chat_request,
    echo_of,
    input_items,
    responses_names,
)
from spine.pipeline.responses_kind import RESPONSES
from spine.schemas.response_object import Item, ResponseObject
from spine.schemas.responses import ResponsesRequest
from spine.storage import db
from spine.storage import responses as store
from spine.storage.db import Database
from spine.storage.owner import Owner
from spine.storage.responses import NewResponse

_RESPONSE_ID = re.compile(rf"^{RESPONSE_ID_PREFIX}[0-9a-f]{{32}}$")


@dataclass(frozen=True)
class ResponsesCall:
    """One POST /v1/responses, ready for the pipeline: the chat request it becomes and
    what is stored after the answer."""

    owner: Owner
    store: bool
    previous_id: uuid.UUID | None
    draft: ResponseDraft
    request: ResponsesChatRequest
    history: list[Item]  # the conversation before this request (previous_response_id)
    items: list[Item]  # this request's input items, with their ids
    ignored: tuple[str, ...]  # request fields accepted without effect

    def dropped(self, by_provider: tuple[str, ...]) -> tuple[str, ...]:
        """Every field left out, as the client named it (x-spine-dropped-params)."""
        return tuple(sorted({*self.ignored, *responses_names(by_provider)}))


def owner_of(principal: Principal) -> Owner:
    return Owner(tenant=principal.tenant or "", subject=principal.subject)


def parse_response_id(raw: str) -> uuid.UUID | None:
    """The row id of a response id Spine made (`resp_` and 32 hex digits); None for
    anything else, which no caller can own."""
    if not _RESPONSE_ID.match(raw):
        return None
    return uuid.UUID(hex=raw.removeprefix(RESPONSE_ID_PREFIX))


def not_found(raw: str) -> NotFoundError:
    return NotFoundError(
        f"Response with id '{raw[:80]}' not found.", param="response_id", code="not_found"
    )


# --- a call ---------------------------------------------------------------------------------


async def open_call(
    database: Database, principal: Principal, body: ResponsesRequest
) -> ResponsesCall:
    """The call `body` asks for, its earlier turns loaded (one round trip); raises the
    400 of a request that cannot be answered, before anything is stored or billed."""
    owner = owner_of(principal)
    history: list[Item] = []
    previous = None
    if body.previous_response_id is not None:
        previous = parse_response_id(body.previous_response_id)
        found = None
        if previous is not None:
            conn = await database.connection()
            found = await store.read(conn, owner, previous, "conversation")
        if found is None:
            raise InvalidRequestError(
                f"Previous response with id '{body.previous_response_id[:80]}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        history = found
    draft = ResponseDraft(echo=echo_of(body))
    items = input_items(body)
    request, ignored = chat_request(body, history, items, draft)
    return ResponsesCall(owner, body.stored, previous, draft, request, history, items, ignored)


async def answer(call: ResponsesCall, ctx: CallContext) -> tuple[ResponseObject, CallResult]:
    """The whole answer as a Response, stored when asked, with its usage row written."""
    completion, result = await run.answer(RESPONSES, call.request, ctx)
    response = call.draft.answer(completion)
    result.dropped_params = call.dropped(result.dropped_params)
    if call.store:
        await save(ctx, call, response)
    return response, result


async def save(ctx: CallContext, call: ResponsesCall, response: ResponseObject) -> None:
    """Keep the response with its conversation (earlier turns, this input, this output),
    so that a follow-up reads one row."""
    new = NewResponse(
        id=uuid.UUID(hex=call.draft.id.removeprefix(RESPONSE_ID_PREFIX)),
        model=response.model,
        status=response.status,
        previous_response_id=call.previous_id,
        request_id=ctx.request_id,
        response=response.model_dump(mode="json"),
        input_items=call.items,
        conversation=[*call.history, *call.items, *response.output],
    )
    try:
        conn = await ctx.database.connection()
        await store.insert_response(conn, call.owner, new)
    except psycopg.OperationalError as exc:
        raise db.unavailable(exc) from exc


# --- stored responses -----------------------------------------------------------------------


async def get_response(database: Database, principal: Principal, raw_id: str) -> Item:
    found: Item = await _owned(database, principal, raw_id, "response")
    return found


async def delete_response(database: Database, principal: Principal, raw_id: str) -> None:
    response_id = parse_response_id(raw_id)
    deleted = False
    if response_id is not None:
        conn = await database.connection()
        deleted = await store.delete_response(conn, owner_of(principal), response_id)
    if not deleted:
        raise not_found(raw_id)


async def list_input_items(
    database: Database,
    principal: Principal,
    raw_id: str,
    *,
    limit: int,
    after: str | None,
    order: Literal["asc", "desc"],
) -> tuple[list[Item], bool]:
    """A page of the response's input items (newest first unless `order` is asc), after
    the item `after`, and whether more follow."""
    items: list[Item] = list(await _owned(database, principal, raw_id, "input_items"))
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequestError(
                f"'after' is not an input item of this response: {after[:64]}",
                param="after",
                code="invalid_cursor",
            )
        items = items[ids.index(after) + 1 :]
    return items[:limit], len(items) > limit


async def _owned(database: Database, principal: Principal, raw_id: str, part: store.Part) -> Any:
    """`part` of the caller's response `raw_id`; 404 when it is not the caller's."""
    response_id = parse_response_id(raw_id)
    found = None
    if response_id is not None:
        conn = await database.connection()
        found = await store.read(conn, owner_of(principal), response_id, part)
    if found is None:
        raise not_found(raw_id)
    return found
