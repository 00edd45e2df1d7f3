"""Chat sessions and their messages in Postgres (`ChatSessionStore`'s statements).

Every statement is scoped by `Owner` (tenant and principal) in its own WHERE clause:
another principal's session is never read or written, whatever path the caller
took, so it cannot leak through a forgotten check. The chat path costs two round
trips: `load_session` (the session and its recent history, one statement) before
the provider call and `append_messages` (the user turn and the reply, one
statement, hence one transaction) after it. Statements are complete and
parameterized; nothing is built from strings.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from spine.storage.db import Connection
from spine.storage.owner import Owner

_INSERT_SESSION = """
INSERT INTO chat_sessions (tenant, owner, title, model, system_prompt)
VALUES (%(tenant)s, %(owner)s, %(title)s, %(model)s, %(system_prompt)s)
RETURNING id, tenant, owner, title, model, system_prompt, message_count, created_at, updated_at
"""

_GET_SESSION = """
SELECT id, tenant, owner, title, model, system_prompt, message_count, created_at, updated_at
FROM chat_sessions
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
"""

# The session and its newest `history` messages (returned oldest first) in one
# round trip: the messages come back as one json array of arrays (in NewMessage's
# field order), not one row each; json arrays cost a third less than jsonb objects
# to build and parse (measured with tests/benchmarks/bench_db_path.py).
# Positions are 0 .. message_count-1 (appends reserve them under the row lock).
_LOAD_SESSION = """
SELECT id, tenant, owner, title, model, system_prompt, message_count, created_at, updated_at, (
    SELECT coalesce(json_agg(json_build_array(
               m.role, m.content, m.parts, m.name, m.tool_calls, m.tool_call_id, m.tokens
           ) ORDER BY m.seq), '[]'::json)
    FROM (SELECT * FROM chat_messages
          WHERE session_id = s.id ORDER BY seq DESC LIMIT %(history)s) AS m
) AS history
FROM chat_sessions AS s
WHERE s.id = %(id)s AND s.tenant = %(tenant)s AND s.owner = %(owner)s
"""

# User turns older than the loaded messages: the model never sees them, and the
# caller reports them as dropped. Asked only for a session longer than the load.
_COUNT_OLDER_TURNS = """
SELECT count(*) FROM chat_messages
WHERE session_id = %(id)s AND seq < %(before)s AND role = 'user'
"""

# Keyset pagination, newest first: sessions strictly after the cursor session. A
# cursor that is not one of the owner's sessions yields no cursor row (checked apart).
_LIST_SESSIONS = """
SELECT id, tenant, owner, title, model, system_prompt, message_count, created_at, updated_at
FROM chat_sessions
WHERE tenant = %(tenant)s AND owner = %(owner)s
  AND (%(after)s::uuid IS NULL OR (created_at, id) < (
        SELECT created_at, id FROM chat_sessions
        WHERE id = %(after)s::uuid AND tenant = %(tenant)s AND owner = %(owner)s))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""

# A None field keeps its value unless its `set_*` flag says to write it (so PATCH
# can clear the system prompt with an explicit null).
_UPDATE_SESSION = """
UPDATE chat_sessions SET
    title = CASE WHEN %(set_title)s THEN %(title)s ELSE title END,
    model = CASE WHEN %(set_model)s THEN %(model)s ELSE model END,
    system_prompt = CASE WHEN %(set_system_prompt)s THEN %(system_prompt)s
                         ELSE system_prompt END,
    updated_at = clock_timestamp()
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
RETURNING id, tenant, owner, title, model, system_prompt, message_count, created_at, updated_at
"""

# Messages cascade with their session.
_DELETE_SESSION = """
DELETE FROM chat_sessions WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
RETURNING id
"""

# One statement, so one transaction: the messages are all stored or none is. The
# UPDATE takes the session's row lock and reserves positions base .. base+count-1,
# so concurrent appends to one session never clash; if the session is gone (or is
# another owner's), nothing is inserted.
_APPEND_MESSAGES = """
WITH session AS (
    UPDATE chat_sessions
    SET message_count = message_count + %(count)s, updated_at = clock_timestamp()
    WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
    RETURNING id, message_count - %(count)s AS base
)
INSERT INTO chat_messages (
    session_id, seq, role, content, parts, name, tool_calls, tool_call_id, request_id, tokens
)
SELECT session.id, session.base + m.ord, m.role, m.content, m.parts, m.name,
       m.tool_calls, m.tool_call_id, %(request_id)s, m.tokens
FROM session, jsonb_to_recordset(%(messages)s) AS m(
    ord integer, role text, content text, parts jsonb, name text, tool_calls jsonb,
    tool_call_id text, tokens integer)
RETURNING id, session_id, seq, role, content, parts, name, tool_calls, tool_call_id, request_id,
       tokens, created_at
"""

# A transcript page, oldest first, after the cursor message, in one round trip:
# one row per message, or a single row of NULL message columns when the session
# exists but the page is empty; no row at all when it is not the owner's session.
_LIST_MESSAGES = """
SELECT s.id AS owning_session,
       (%(after)s::uuid IS NULL OR cursor.seq IS NOT NULL) AS cursor_found,
       m.id, m.session_id, m.seq, m.role, m.content, m.parts, m.name, m.tool_calls,
       m.tool_call_id, m.request_id, m.tokens, m.created_at
FROM chat_sessions AS s
LEFT JOIN chat_messages AS cursor ON cursor.id = %(after)s::uuid AND cursor.session_id = s.id
LEFT JOIN LATERAL (
    SELECT * FROM chat_messages
    WHERE session_id = s.id AND seq > coalesce(cursor.seq, -1)
    ORDER BY seq
    LIMIT %(limit)s
) AS m ON true
WHERE s.id = %(id)s AND s.tenant = %(tenant)s AND s.owner = %(owner)s
ORDER BY m.seq
"""


@dataclass(frozen=True)
class SessionRow:
    id: uuid.UUID
    tenant: str
    owner: str
    title: str
    model: str
    system_prompt: str | None
    message_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NewMessage:
    """A message to store; also the shape of a loaded history message (the load
    query returns its fields in this order)."""

    role: str  # 'user' | 'assistant' | 'tool'
    content: str | None
    parts: list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    tokens: int | None = None


@dataclass(frozen=True)
class MessageRow:
    id: uuid.UUID
    session_id: uuid.UUID
    seq: int
    role: str
    content: str | None
    parts: list[dict[str, Any]] | None
    name: str | None
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    request_id: str
    tokens: int | None
    created_at: datetime


@dataclass(frozen=True)
class LoadedSession:
    session: SessionRow
    history: list[NewMessage]  # the newest messages, oldest first
    older_turns: int  # user turns before them, not loaded


@dataclass(frozen=True)
class MessagePage:
    messages: list[MessageRow]
    cursor_found: bool


async def create_session(
    conn: Connection, owner: Owner, *, title: str, model: str, system_prompt: str | None
) -> SessionRow:
    async with conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(
            _INSERT_SESSION,
            {**owner.params(), "title": title, "model": model, "system_prompt": system_prompt},
        )
        row = await cur.fetchone()
    assert row is not None  # INSERT ... RETURNING
    return row


async def get_session(conn: Connection, owner: Owner, session_id: uuid.UUID) -> SessionRow | None:
    async with conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(_GET_SESSION, {**owner.params(), "id": session_id})
        return await cur.fetchone()


async def load_session(
    conn: Connection, owner: Owner, session_id: uuid.UUID, *, history: int
) -> LoadedSession | None:
    """The owner's session with its newest `history` messages, in one round trip (a
    second one only for a session holding more than `history` messages)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_LOAD_SESSION, {**owner.params(), "id": session_id, "history": history})
        row = await cur.fetchone()
    if row is None:
        return None
    messages = [NewMessage(*m) for m in row.pop("history")]
    session = SessionRow(**row)
    older = 0
    if session.message_count > len(messages):
        first_loaded = session.message_count - len(messages)
        counting = await conn.execute(
            _COUNT_OLDER_TURNS, {"id": session_id, "before": first_loaded}
        )
        counted = await counting.fetchone()
        older = int(counted[0]) if counted is not None else 0
    return LoadedSession(session, messages, older)


async def list_sessions(
    conn: Connection, owner: Owner, *, limit: int, after: uuid.UUID | None = None
) -> list[SessionRow]:
    """Up to `limit` of the owner's sessions, newest first, after the cursor."""
    async with conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(_LIST_SESSIONS, {**owner.params(), "after": after, "limit": limit})
        return await cur.fetchall()


async def update_session(
    conn: Connection, owner: Owner, session_id: uuid.UUID, changes: dict[str, Any]
) -> SessionRow | None:
    """Write the fields present in `changes` (title, model, system_prompt)."""
    params: dict[str, Any] = {**owner.params(), "id": session_id}
    for name in ("title", "model", "system_prompt"):
        params[f"set_{name}"] = name in changes
        params[name] = changes.get(name)
    async with conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(_UPDATE_SESSION, params)
        return await cur.fetchone()


async def delete_session(conn: Connection, owner: Owner, session_id: uuid.UUID) -> bool:
    """Delete the session and (cascade) its messages; False if it is not the owner's."""
    cur = await conn.execute(_DELETE_SESSION, {**owner.params(), "id": session_id})
    return await cur.fetchone() is not None


async def append_messages(
    conn: Connection,
    owner: Owner,
    session_id: uuid.UUID,
    messages: Sequence[NewMessage],
    *,
    request_id: str,
) -> list[MessageRow]:
    """Store `messages` (a user turn and its reply) at the end of the session, all or
    none, in one statement. Empty when the session is not the owner's (or was
    deleted meanwhile): nothing is stored then."""
    payload = [{"ord": i, **asdict(m)} for i, m in enumerate(messages)]
    async with conn.cursor(row_factory=class_row(MessageRow)) as cur:
        await cur.execute(
            _APPEND_MESSAGES,
            {
                **owner.params(),
                "id": session_id,
                "count": len(payload),
                "messages": Jsonb(payload),
                "request_id": request_id,
            },
        )
        rows = await cur.fetchall()
    return sorted(rows, key=lambda row: row.seq)  # INSERT ... RETURNING has no order


async def list_messages(
    conn: Connection,
    owner: Owner,
    session_id: uuid.UUID,
    *,
    limit: int,
    after: uuid.UUID | None = None,
) -> MessagePage | None:
    """Up to `limit` messages of the owner's session, oldest first, after the cursor
    message; None when the session is not the owner's."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _LIST_MESSAGES, {**owner.params(), "id": session_id, "after": after, "limit": limit}
        )
        rows = await cur.fetchall()
    if not rows:
        return None
    found = bool(rows[0]["cursor_found"])
    messages = [
        MessageRow(**{k: v for k, v in row.items() if k not in ("owning_session", "cursor_found")})
        for row in rows
        if row["id"] is not None
    ]
    return MessagePage(messages, found)
