"""Stored reviews in Postgres.

Every statement is scoped by `Owner` (tenant and principal) in its own WHERE clause,
as chat sessions and responses are: another principal's review is never read,
whatever path the caller took. Statements are complete and parameterized.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from spine.storage.db import Connection
from spine.storage.owner import Owner
from spine.storage.responses import without_nul

_INSERT = """
INSERT INTO reviews (
    id, tenant, owner, request_id, status, judge_model, rounds, weighted_score, agreement,
    review, created_at
)
VALUES (
    %(id)s, %(tenant)s, %(owner)s, %(request_id)s, %(status)s, %(judge_model)s, %(rounds)s,
    %(weighted_score)s, %(agreement)s, %(review)s, %(created_at)s
)
"""

_GET = """
SELECT review FROM reviews WHERE id = %(id)s AND tenant = %(tenant)s AND owner = %(owner)s
"""

# Keyset pagination, newest first: reviews strictly after the cursor review (a cursor
# that is not one of the owner's reviews yields no row to compare with: no rows).
_LIST = """
SELECT id, status, judge_model, rounds, weighted_score, agreement, created_at
FROM reviews
WHERE tenant = %(tenant)s AND owner = %(owner)s
  AND (%(after)s::uuid IS NULL OR (created_at, id) < (
        SELECT created_at, id FROM reviews
        WHERE id = %(after)s::uuid AND tenant = %(tenant)s AND owner = %(owner)s))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class NewReview:
    id: uuid.UUID
    request_id: str
    status: str
    judge_model: str
    rounds: int
    weighted_score: float | None
    agreement: float | None
    review: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class ReviewRow:
    id: uuid.UUID
    status: str
    judge_model: str
    rounds: int
    weighted_score: float | None
    agreement: float | None
    created_at: datetime


async def insert_review(conn: Connection, owner: Owner, new: NewReview) -> None:
    await conn.execute(
        _INSERT,
        {
            **owner.params(),
            "id": new.id,
            "request_id": new.request_id,
            "status": new.status,
            "judge_model": new.judge_model,
            "rounds": new.rounds,
            "weighted_score": new.weighted_score,
            "agreement": new.agreement,
            "review": Jsonb(without_nul(new.review)),
            "created_at": new.created_at,
        },
    )


async def get_review(conn: Connection, owner: Owner, review_id: uuid.UUID) -> Any:
    """The owner's review object (JSON as stored), or None."""
    cur = await conn.execute(_GET, {**owner.params(), "id": review_id})
    row = await cur.fetchone()
    return None if row is None else row[0]


async def list_reviews(
    conn: Connection, owner: Owner, *, limit: int, after: uuid.UUID | None
) -> tuple[list[ReviewRow], bool]:
    """One page of the owner's reviews, newest first, and whether more follow."""
    async with conn.cursor(row_factory=class_row(ReviewRow)) as cur:
        await cur.execute(_LIST, {**owner.params(), "after": after, "limit": limit + 1})
        rows = await cur.fetchall()
    return rows[:limit], len(rows) > limit
