"""The chat session API: sessions, their transcripts, and sending a message.

Handlers are thin: parse (after authentication), call `spine.sessions`, shape the
response. Every session belongs to its principal: anyone else gets 404 on every
verb, and an anonymous caller 401 (`spine.sessions.service.owner_of`).

Lists use OpenAI's list shape: sessions newest first, a transcript oldest first (the
order it is read in); `after` is the last id of the previous page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from spine.api.answer_headers import call_headers
from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, RegistryDep, StateDep, built_call_context
from spine.api.openapi import PAGE_QUERY, json_body
from spine.api.query import epoch, known_query, page_limit
from spine.api.session_chat import session_headers
from spine.schemas.openai import ChatCompletionRequest
from spine.schemas.public import Deleted, ListPage
from spine.schemas.sessions import (
    MessagePublic,
    SessionCreate,
    SessionMessageCreate,
    SessionPublic,
    SessionReply,
    SessionUpdate,
)
from spine.sessions import service
from spine.sessions.chat import complete_in_session
from spine.storage.sessions import MessageRow, SessionRow

router = APIRouter()


@router.post("/v1/sessions", status_code=201, openapi_extra=json_body(SessionCreate))
async def create_session(
    request: Request, principal: PrincipalDep, registry: RegistryDep, state: StateDep
) -> SessionPublic:
    service.owner_of(principal)  # 401 before the body is judged
    body = await parse_body(request, SessionCreate, stored=True)
    return session_public(await service.create_session(state.database, principal, body, registry))


@router.get("/v1/sessions", openapi_extra=PAGE_QUERY)
async def list_sessions(
    request: Request, principal: PrincipalDep, state: StateDep
) -> ListPage[SessionPublic]:
    query = known_query(request, {"limit", "after"})
    rows, has_more = await service.list_sessions(
        state.database, principal, limit=page_limit(query), after=query.get("after")
    )
    return ListPage[SessionPublic].of([session_public(row) for row in rows], has_more)


@router.get("/v1/sessions/{session_id}")
async def get_session(session_id: str, principal: PrincipalDep, state: StateDep) -> SessionPublic:
    return session_public(await service.get_session(state.database, principal, session_id))


@router.patch("/v1/sessions/{session_id}", openapi_extra=json_body(SessionUpdate))
async def update_session(
    session_id: str,
    request: Request,
    principal: PrincipalDep,
    registry: RegistryDep,
    state: StateDep,
) -> SessionPublic:
    service.owner_of(principal)
    body = await parse_body(request, SessionUpdate, stored=True)
    return session_public(
        await service.update_session(state.database, principal, session_id, body, registry)
    )


@router.delete("/v1/sessions/{session_id}")
async def delete_session(session_id: str, principal: PrincipalDep, state: StateDep) -> Deleted:
    deleted = await service.delete_session(state.database, principal, session_id)
    return Deleted(id=str(deleted), object="chat.session.deleted")


@router.get(
    "/v1/sessions/{session_id}/messages",
    openapi_extra=PAGE_QUERY,
)
async def list_messages(
    session_id: str, request: Request, principal: PrincipalDep, state: StateDep
) -> ListPage[MessagePublic]:
    query = known_query(request, {"limit", "after"})
    rows, has_more = await service.list_messages(
        state.database, principal, session_id, limit=page_limit(query), after=query.get("after")
    )
    return ListPage[MessagePublic].of([message_public(row) for row in rows], has_more)


# JSONResponse: the completion is written by json.dumps as the chat routes write it
# (pydantic writes small floats, as in logprobs, in another form: 1e-6 for 1e-06).
@router.post(
    "/v1/sessions/{session_id}/messages",
    response_class=JSONResponse,
    openapi_extra=json_body(SessionMessageCreate),
)
async def send_message(
    session_id: str,
    request: Request,
    *,
    response: Response,
    state: StateDep,
    principal: PrincipalDep,
    registry: RegistryDep,
) -> SessionReply:
    """Run the session's model on its system prompt, trimmed history and this user
    message; store the message and the reply together; return both and the
    completion."""
    service.owner_of(principal)
    body = await parse_body(request, SessionMessageCreate, stored=True)
    loaded = await service.load_session(
        state.database, principal, session_id, history=state.settings.limits.max_messages
    )
    chat_request = ChatCompletionRequest.model_validate(
        {
            "model": loaded.session.model,
            "messages": [{"role": "user", "content": body.content}],
            **body.model_dump(exclude_unset=True, exclude={"content"}),
        }
    )
    turn = service.build_turn(principal, loaded, chat_request, registry)
    # Admitted on what the model will be sent: the body names no model and holds one
    # message.
    ctx = await built_call_context(request, state, principal, registry, turn.request)
    reply = await complete_in_session(turn, ctx)
    response.headers.update({**call_headers(reply.result), **session_headers(turn)})
    return SessionReply(
        session_id=str(turn.session.id),
        turns_dropped=turn.turns_dropped,
        messages=[message_public(row) for row in reply.stored],
        completion=reply.completion,
    )


# --- response shapes (API objects, mapped explicitly from rows) ---------------------


def session_public(row: SessionRow) -> SessionPublic:
    return SessionPublic(
        id=str(row.id),
        title=row.title,
        model=row.model,
        system_prompt=row.system_prompt,
        message_count=row.message_count,
        created_at=epoch(row.created_at),
        updated_at=epoch(row.updated_at),
    )


def message_public(row: MessageRow) -> MessagePublic:
    return MessagePublic(
        id=str(row.id),
        session_id=str(row.session_id),
        role=row.role,
        content=row.parts if row.parts is not None else row.content,
        name=row.name,
        tool_calls=row.tool_calls,
        tool_call_id=row.tool_call_id,
        request_id=row.request_id,
        tokens=row.tokens,
        created_at=epoch(row.created_at),
    )


# --- query parameters ---------------------------------------------------------------
