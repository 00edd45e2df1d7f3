"""The executions log of a caller: its own capability calls and prompt executions;
an admin's, every principal's of its tenant (or one named principal's)."""

from __future__ import annotations

from spine.auth.principal import Principal
from spine.errors import PermissionDeniedError
from spine.schemas.executions import CAPABILITY_ENDPOINT_PREFIX, ExecutionsQuery
from spine.storage.db import Database
from spine.storage.executions import ExecutionFilter, ExecutionRow, list_executions


async def read_executions(
    database: Database, principal: Principal, query: ExecutionsQuery
) -> tuple[list[ExecutionRow], bool]:
    """A page of executions, newest first, and whether more follow."""
    admin = principal.has_scope("admin")
    if query.principal is not None and query.principal != principal.subject and not admin:
        raise PermissionDeniedError(
            "Reading another principal's executions needs the 'admin' scope.",
            param="principal",
            code="insufficient_scope",
        )
    where = ExecutionFilter(
        tenant=principal.tenant,
        principal=query.principal if admin else principal.subject,
        endpoint=None
        if query.capability is None
        else f"{CAPABILITY_ENDPOINT_PREFIX}{query.capability}",
        model=query.model,
        status=query.status,
        since=query.since,
        until=query.until,
    )
    conn = await database.connection()
    rows = await list_executions(conn, where, limit=query.limit + 1, after=query.after)
    return rows[: query.limit], len(rows) > query.limit
