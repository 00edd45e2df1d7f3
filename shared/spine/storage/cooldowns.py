"""Cooldowns of failing deployments, in Postgres so every function instance agrees.

Reads are one indexed SELECT per request (only rows of the request's fallback
chain); writes happen only on upstream failures. Times come from the database clock,
so instances with skewed clocks still agree. See migrations/0004_cooldowns.sql.
"""

from __future__ import annotations

from collections.abc import Iterable

from spine.storage.db import Connection

_COOLED = """
SELECT model_id, deployment FROM deployment_cooldowns
WHERE model_id = ANY(%(models)s) AND cooled_until > now()
"""

# One statement, atomic under concurrency: the row's lock serializes instances that
# fail at the same moment. A failure outside the window starts a new window at 1.
_RECORD_FAILURE = """
INSERT INTO deployment_cooldowns AS c (model_id, deployment, failures, window_started,
                                       cooled_until, last_error)
VALUES (%(model)s, %(deployment)s, 1, now(),
        CASE WHEN %(threshold)s <= 1 THEN now() + make_interval(secs => %(cooldown)s) END,
        %(error)s)
ON CONFLICT (model_id, deployment) DO UPDATE SET
    failures = CASE WHEN c.window_started > now() - make_interval(secs => %(window)s)
                    THEN c.failures + 1 ELSE 1 END,
    window_started = CASE WHEN c.window_started > now() - make_interval(secs => %(window)s)
                          THEN c.window_started ELSE now() END,
    cooled_until = CASE
        WHEN (CASE WHEN c.window_started > now() - make_interval(secs => %(window)s)
                   THEN c.failures + 1 ELSE 1 END) >= %(threshold)s
        THEN now() + make_interval(secs => %(cooldown)s)
        ELSE c.cooled_until END,
    last_error = %(error)s
RETURNING cooled_until > now()
"""


async def cooled_down(conn: Connection, models: Iterable[str]) -> set[tuple[str, str]]:
    """(model id, deployment) pairs among `models` that are cooling down now."""
    cursor = await conn.execute(_COOLED, {"models": list(models)})
    return {(str(model), str(deployment)) for model, deployment in await cursor.fetchall()}


async def record_failure(
    conn: Connection,
    model: str,
    deployment: str,
    *,
    threshold: int,
    window_seconds: float,
    cooldown_seconds: float,
    error: str | None = None,
) -> bool:
    """Count one failure; True when the deployment is (now) cooling down."""
    cursor = await conn.execute(
        _RECORD_FAILURE,
        {
            "model": model,
            "deployment": deployment,
            "threshold": threshold,
            "window": window_seconds,
            "cooldown": cooldown_seconds,
            "error": error,
        },
    )
    row = await cursor.fetchone()
    return bool(row and row[0])
