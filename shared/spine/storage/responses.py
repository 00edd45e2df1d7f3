"""Stored responses of the Responses API in Postgres.

Every statement is scoped by `Owner` (tenant and principal) in its own WHERE clause,
as chat sessions are: another principal's response is never read or deleted, whatever
path the caller took. Statements are complete and parameterized.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from psycopg.types.json import Jsonb

from spine.storage.db import Connection
from spine.storage.owner import Owner

_INSERT = """
INSERT INTO responses (
    id, tenant, owner, model, status, previous_response_id, request_id,
    response, input_items, conversation
)
VALUES (
    %(id)s, %(tenant)s, %(owner)s, %(model)s, %(status)s, %(previous_response_id)s,
    %(request_id)s, %(response)s, %(input_items)s, %(conversation)s
)
"""

# One column of the owner's row: the Response, its input items, its conversation.
Part = Literal["response", "input_items", "conversation"]
_READ: dict[Part, str] = {
    "response": """
SELECT response FROM responses WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
""",
    "input_items": """
SELECT input_items FROM responses
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
""",
    "conversation": """
SELECT conversation FROM responses
WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
""",
}

_DELETE = """
DELETE FROM responses WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
RETURNING id
"""

Item = dict[str, Any]


@dataclass(frozen=True)
class NewResponse:
    id: uuid.UUID
    model: str
    status: str
    previous_response_id: uuid.UUID | None
    request_id: str
    response: dict[str, Any]
    input_items: list[Item]
    conversation: list[Item]


async def insert_response(conn: Connection, owner: Owner, new: NewResponse) -> None:
    await conn.execute(
        _INSERT,
        {
            **owner.params(),
            "id": new.id,
            "model": new.model,
            "status": new.status,
            "previous_response_id": new.previous_response_id,
            "request_id": new.request_id,
            "response": Jsonb(without_nul(new.response)),
            "input_items": Jsonb(without_nul(new.input_items)),
            "conversation": Jsonb(without_nul(new.conversation)),
        },
    )


async def read(conn: Connection, owner: Owner, response_id: uuid.UUID, part: Part) -> Any:
    """`part` of the owner's response (JSON as stored), or None when it is not the
    owner's (or does not exist)."""
    cur = await conn.execute(_READ[part], {**owner.params(), "id": response_id})
    row = await cur.fetchone()
    return None if row is None else row[0]


async def delete_response(conn: Connection, owner: Owner, response_id: uuid.UUID) -> bool:
    cur = await conn.execute(_DELETE, {**owner.params(), "id": response_id})
    return await cur.fetchone() is not None


def without_nul(value: Any) -> Any:
    """Text as Postgres can hold it: a model's output may contain NUL (\\u0000), which
    jsonb cannot; it is replaced, as a session's stored reply is."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value
