"""Chat session operations for one principal: create, read, update, delete, list
messages, and the session side of a chat call (load and trim before, store after).

Ownership: every statement is scoped by the caller's tenant and subject (in SQL, see
`spine.storage.sessions`), so another principal's session is "not found", never
"forbidden". A caller without identity (the anonymous principal of a
`verify_jwt = false` function) has no sessions at all: 401.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from spine.auth.principal import Principal
from spine.errors import AuthenticationError, InvalidRequestError, NotFoundError
from spine.observability import get_logger
from spine.pipeline.params import apply_defaults
from spine.pipeline.tokens import count_prompt
from spine.registry.resolve import Registry
from spine.schemas.openai import AssistantMessage, ChatCompletionRequest, ChatMessage
from spine.schemas.sessions import SessionCreate, SessionUpdate
from spine.sessions.history import (
    SYSTEM_ROLES,
    from_chat_message,
    from_reply,
    to_chat_message,
    trim_history,
)
from spine.storage import db
from spine.storage import sessions as store
from spine.storage.db import Database
from spine.storage.owner import Owner
from spine.storage.sessions import LoadedSession, MessageRow, NewMessage, SessionRow

logger = get_logger(__name__)

SESSION_PARAM = "session_id"


@dataclass(frozen=True)
class SessionTurn:
    """One chat call in a session: what the model is sent, and what is stored after."""

    owner: Owner
    session: SessionRow
    request: ChatCompletionRequest  # history included, session_id removed
    new_messages: list[NewMessage]  # the caller's messages, stored with the reply
    turns_dropped: int


def owner_of(principal: Principal) -> Owner:
    """The session owner a principal is; 401 for a caller without identity."""
    if principal.credential == "anonymous":
        raise AuthenticationError(
            "Chat sessions belong to an authenticated caller: send an API key or a JWT "
            "(this function has verify_jwt = false, so every caller is anonymous).",
            code="session_requires_identity",
        )
    return Owner(tenant=principal.tenant or "", subject=principal.subject)


def parse_id(raw: str, *, param: str = SESSION_PARAM, what: str = "session") -> uuid.UUID:
    """A path or body id: not a UUID is a 400 naming the param (an unknown UUID is
    the caller's 404)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidRequestError(
            f"'{param}' must be a {what} id (a UUID), got '{raw[:64]}'.",
            param=param,
            code="invalid_id",
        ) from None


def not_found(session_id: uuid.UUID | str) -> NotFoundError:
    return NotFoundError(
        f"No session found with id '{session_id}'.", param=SESSION_PARAM, code="session_not_found"
    )


# --- CRUD ---------------------------------------------------------------------------


async def create_session(
    database: Database, principal: Principal, body: SessionCreate, registry: Registry
) -> SessionRow:
    owner = owner_of(principal)
    registry.resolve(body.model)  # an unknown model is a 404 naming 'model' now, not later
    conn = await database.connection()
    return await store.create_session(
        conn, owner, title=body.title, model=body.model, system_prompt=body.system_prompt
    )


async def get_session(database: Database, principal: Principal, raw_id: str) -> SessionRow:
    owner, session_id = owner_of(principal), parse_id(raw_id)
    row = await store.get_session(await database.connection(), owner, session_id)
    if row is None:
        raise not_found(session_id)
    return row


async def list_sessions(
    database: Database, principal: Principal, *, limit: int, after: str | None
) -> tuple[list[SessionRow], bool]:
    """A page of the caller's sessions, newest first, and whether more follow."""
    owner = owner_of(principal)
    conn = await database.connection()
    cursor = None
    if after is not None:
        cursor = parse_id(after, param="after")
        if await store.get_session(conn, owner, cursor) is None:
            raise InvalidRequestError(
                f"'after' is not one of your sessions: {after[:64]}",
                param="after",
                code="invalid_cursor",
            )
    rows = await store.list_sessions(conn, owner, limit=limit + 1, after=cursor)
    return rows[:limit], len(rows) > limit


async def update_session(
    database: Database, principal: Principal, raw_id: str, body: SessionUpdate, registry: Registry
) -> SessionRow:
    owner, session_id = owner_of(principal), parse_id(raw_id)
    changes: dict[str, Any] = body.changes()
    if "model" in changes:
        registry.resolve(changes["model"])
    row = await store.update_session(await database.connection(), owner, session_id, changes)
    if row is None:
        raise not_found(session_id)
    return row


async def delete_session(database: Database, principal: Principal, raw_id: str) -> uuid.UUID:
    owner, session_id = owner_of(principal), parse_id(raw_id)
    if not await store.delete_session(await database.connection(), owner, session_id):
        raise not_found(session_id)
    return session_id


async def list_messages(
    database: Database, principal: Principal, raw_id: str, *, limit: int, after: str | None
) -> tuple[list[MessageRow], bool]:
    """A page of the session's transcript, oldest first, and whether more follow."""
    owner, session_id = owner_of(principal), parse_id(raw_id)
    cursor = parse_id(after, param="after", what="message") if after is not None else None
    page = await store.list_messages(
        await database.connection(), owner, session_id, limit=limit + 1, after=cursor
    )
    if page is None:
        raise not_found(session_id)
    if not page.cursor_found:
        raise InvalidRequestError(
            f"'after' is not a message of this session: {after}",
            param="after",
            code="invalid_cursor",
        )
    return page.messages[:limit], len(page.messages) > limit


# --- a chat call in a session ---------------------------------------------------------


async def load_session(
    database: Database, principal: Principal, raw_id: str, *, history: int
) -> LoadedSession:
    """The caller's session with its newest `history` messages (one round trip)."""
    owner, session_id = owner_of(principal), parse_id(raw_id)
    loaded = await store.load_session(
        await database.connection(), owner, session_id, history=history
    )
    if loaded is None:
        raise not_found(session_id)
    return loaded


def build_turn(
    principal: Principal,
    loaded: LoadedSession,
    request: ChatCompletionRequest,
    registry: Registry,
) -> SessionTurn:
    """The request the model is sent: the system prompt (the request's own, else the
    session's), the history trimmed to the window, then the request's new messages.
    Raises before any provider call for a request that cannot be stored."""
    resolved = registry.resolve(request.model)
    system = [m for m in request.messages if m.role in SYSTEM_ROLES]
    new = [m for m in request.messages if m.role not in SYSTEM_ROLES]
    if not new:
        raise InvalidRequestError(
            "With 'session_id', send at least one non-system message to add to the session.",
            param="messages",
        )
    for index, message in enumerate(request.messages):
        if "\x00" in message.text():
            raise InvalidRequestError(
                "Messages stored in a session may not contain NUL (\\u0000) characters.",
                param=f"messages[{index}].content",
            )
    if not system and loaded.session.system_prompt:
        system = [ChatMessage(role="system", content=loaded.session.system_prompt)]
    plain = _without_session(request, [*system, *new])
    # Counted as the provider will receive it: profile system prompt and defaults in.
    effective = apply_defaults(plain, resolved)
    history = [to_chat_message(m) for m in loaded.history]
    trimmed = trim_history(
        history, fixed=effective.messages, request=effective, entry=resolved.entry
    )
    request_out = _without_session(request, [*system, *trimmed.history, *new])
    entry = resolved.entry
    to_store = [from_chat_message(m, tokens=count_prompt(entry, messages=[m]).tokens) for m in new]
    # Leading loaded messages of a turn whose user message was not loaded are left
    # out with it; that turn is among older_turns.
    dropped = trimmed.turns_dropped + loaded.older_turns
    if dropped:
        logger.info(
            "session history trimmed",
            extra={
                "session_id": str(loaded.session.id),
                "turns_dropped": dropped,
                "turns_kept": trimmed.turns_kept,
                "model": entry.id,
            },
        )
    return SessionTurn(
        owner=owner_of(principal),
        session=loaded.session,
        request=request_out,
        new_messages=to_store,
        turns_dropped=dropped,
    )


def _without_session(
    request: ChatCompletionRequest, messages: list[ChatMessage]
) -> ChatCompletionRequest:
    """The request with these messages and no `session_id` (never sent upstream)."""
    fields = request.model_dump(exclude_unset=True, exclude={"session_id", "messages"})
    return ChatCompletionRequest.model_validate({**fields, "messages": messages})


async def store_turn(
    database: Database,
    turn: SessionTurn,
    reply: AssistantMessage,
    *,
    completion_tokens: int | None,
    request_id: str,
) -> list[MessageRow]:
    """Store the turn's new messages and the reply: one statement, all or nothing.
    Called only after the provider answered, so a failed call stores nothing."""
    messages = [*turn.new_messages, from_reply(reply, tokens=completion_tokens)]
    try:
        conn = await database.connection()
        rows = await store.append_messages(
            conn, turn.owner, turn.session.id, messages, request_id=request_id
        )
    except psycopg.OperationalError as exc:
        raise db.unavailable(exc) from exc
    if not rows:
        # Deleted while the model was answering: there is nothing to append to.
        logger.warning(
            "session deleted during the call",
            extra={"session_id": str(turn.session.id), "request_id": request_id},
        )
        raise not_found(turn.session.id)
    return rows
