"""GET /v1/usage: who may see what, the time range, and the report's JSON shape.

A caller sees its own usage: the ledger rows of its tenant whose `principal` is its
subject (an API key's owner, "key:<id>" for a key without one, or a JWT's user).
Only a caller with the `admin` scope may name another `principal`, or see every
caller's usage: an admin bound to a tenant sees that tenant's rows only, a global
admin (no tenant) every tenant's, or one tenant's with `tenant`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from spine.auth.principal import Principal
from spine.errors import InvalidRequestError, PermissionDeniedError
from spine.schemas.usage import UsageQuery
from spine.storage.db import Connection, Database
from spine.storage.usage_report import (
    Breakdown,
    UsageFilter,
    UsageGroup,
    UsagePage,
    UsageReport,
    UsageSums,
    usage_report,
)

DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)

_KEY_NAME = {Breakdown.MODEL: "model", Breakdown.DAY: "date", Breakdown.KEY: "api_key_id"}


def usage_filter(query: UsageQuery, principal: Principal, *, now: datetime) -> UsageFilter:
    """The rows `principal` may read that `query` asks for; 4xx naming the field."""
    for name in ("start", "end"):
        value = getattr(query, name)
        if value is not None and not 1970 <= value.astimezone(UTC).year <= 9999:
            raise InvalidRequestError(f"'{name}' is out of range (1970 to 9999).", param=name)
    end = query.end or now
    start = query.start or end - DEFAULT_RANGE
    if end <= start:
        raise InvalidRequestError(
            "'end' must be after 'start' (the range is start <= time < end).", param="end"
        )
    if end - start > MAX_RANGE:
        raise InvalidRequestError(
            f"The time range is {(end - start).days} days; at most {MAX_RANGE.days} days "
            "can be read at once.",
            param="start",
        )
    admin = principal.has_scope("admin")
    if query.principal is not None and query.principal != principal.subject and not admin:
        raise PermissionDeniedError(
            "Reading another principal's usage needs the 'admin' scope.",
            param="principal",
            code="insufficient_scope",
        )
    global_admin = admin and principal.tenant is None
    if query.tenant is not None and query.tenant != principal.tenant and not global_admin:
        raise PermissionDeniedError(
            "Reading another tenant's usage needs the 'admin' scope without a tenant.",
            param="tenant",
            code="insufficient_scope",
        )
    return UsageFilter(
        start=start,
        end=end,
        tenant_scoped=not global_admin or query.tenant is not None,
        tenant=query.tenant if global_admin else principal.tenant,
        principal=query.principal if admin else principal.subject,
        api_key_id=query.key,
        model=query.model,
    )


def breakdowns_of(query: UsageQuery) -> list[Breakdown]:
    return [Breakdown(name) for name in query.group_by]


async def read_usage(database: Database, query: UsageQuery, principal: Principal) -> dict[str, Any]:

    where = usage_filter(query, principal, now=datetime.now(UTC))
    breakdowns = breakdowns_of(query)

    async def read(conn: Connection) -> UsageReport:
        return await usage_report(conn, where, breakdowns, limit=query.limit, offset=query.offset)

    report = await database.run(read)
    return report_body(where, query, report)


def report_body(where: UsageFilter, query: UsageQuery, report: UsageReport) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "usage.report",
        "start": _iso(where.start),
        "end": _iso(where.end),
        "filters": {
            "tenant": where.tenant,
            "principal": where.principal,
            "key": str(where.api_key_id) if where.api_key_id else None,
            "model": where.model,
        },
        "totals": sums_object(report.totals),
        "limit": query.limit,
        "offset": query.offset,
    }
    for breakdown, page in report.breakdowns.items():
        body[f"by_{breakdown.value}"] = _page_object(breakdown, page)
    return body


def sums_object(sums: UsageSums) -> dict[str, Any]:
    return {
        "requests": sums.requests,
        "errors": sums.errors,
        "prompt_tokens": sums.prompt_tokens,
        "completion_tokens": sums.completion_tokens,
        "total_tokens": sums.prompt_tokens + sums.completion_tokens,
        "cached_tokens": sums.cached_tokens,
        "reasoning_tokens": sums.reasoning_tokens,
        "cost_usd": float(sums.cost_usd),
    }


def _page_object(breakdown: Breakdown, page: UsagePage) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [_group_object(breakdown, group) for group in page.groups],
        "has_more": page.has_more,
    }


def _group_object(breakdown: Breakdown, group: UsageGroup) -> dict[str, Any]:
    key = None if group.key is None else str(group.key)
    return {_KEY_NAME[breakdown]: key, **sums_object(group.sums)}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
