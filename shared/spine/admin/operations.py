"""What an operator watches: latency percentiles and error rates by provider and model
(from the usage ledger), and each model's deployments with their cooldowns (from
`models.yaml` and the shared cooldown table)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from spine.errors import InvalidRequestError
from spine.registry.resolve import Registry
from spine.registry.schema import Deployment
from spine.storage.db import Database
from spine.storage.operations import BY_MODEL, BY_PROVIDER, LatencyRow, cooldowns, latency

DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)


def time_range(
    start: datetime | None, end: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end) with the defaults and bounds of GET /v1/usage."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and not 1970 <= value.astimezone(UTC).year <= 9999:
            raise InvalidRequestError(f"'{name}' is out of range (1970 to 9999).", param=name)
    end = end or now
    start = start or end - DEFAULT_RANGE
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
    return start, end


async def latency_report(database: Database, start: datetime, end: datetime) -> dict[str, Any]:

    rows = await latency(await database.connection(), start, end)

    def figures(row: LatencyRow) -> dict[str, Any]:
        return {
            "requests": row.requests,
            "errors": row.errors,
            "error_rate": round(row.errors / row.requests, 6) if row.requests else 0.0,
            "p50_ms": _ms(row.p50_ms),
            "p90_ms": _ms(row.p90_ms),
            "p99_ms": _ms(row.p99_ms),
        }

    overall = next((r for r in rows if r.level == 3), None)
    return {
        "object": "latency.report",
        "start": _iso(start),
        "end": _iso(end),
        "totals": figures(overall) if overall else figures(_EMPTY),
        "by_provider": [
            {"provider": r.provider or "unknown", **figures(r)}
            for r in rows
            if r.level == BY_PROVIDER
        ],
        "by_model": [{"model": r.model, **figures(r)} for r in rows if r.level == BY_MODEL],
    }


async def deployments_report(database: Database, registry: Registry) -> dict[str, Any]:

    by_deployment = {
        (c.model_id, c.deployment): c for c in await cooldowns(await database.connection())
    }
    data = []
    for entry in registry.models:
        # A model without `deployments` is served by one implicit deployment, "default"
        # (spine.pipeline.targets), which is the name its cooldowns are kept under.
        deployments: list[Deployment | None] = list(entry.deployments) or [None]
        items = []
        for deployment in deployments:
            name = deployment.name if deployment else "default"
            cooldown = by_deployment.get((entry.id, name))
            items.append(
                {
                    "name": name,
                    "provider": (deployment.provider if deployment and deployment.provider
                                 else entry.provider).value,
                    "model": (deployment.model if deployment and deployment.model
                              else entry.model),
                    "weight": deployment.weight if deployment else 1.0,
                    "cooldown": None if cooldown is None else {
                        "cooling": cooldown.cooling,
                        "failures": cooldown.failures,
                        "cooled_until": _epoch(cooldown.cooled_until),
                        "window_started": _epoch(cooldown.window_started),
                        "last_error": cooldown.last_error,
                    },
                }
            )  # fmt: skip
        data.append({"model": entry.id, "provider": entry.provider.value, "deployments": items})
    return {"object": "list", "data": data}


class _Empty:
    requests = errors = 0
    p50_ms = p90_ms = p99_ms = None


_EMPTY: Any = _Empty()


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _epoch(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())
