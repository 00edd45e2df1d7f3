"""GET /health (the process answers) and GET /ready (its dependencies answer)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import APIRouter, Response

from spine.api.app import AppState
from spine.api.deps import RegistryDep, StateDep
from spine.observability import get_logger
from spine.registry.schema import ProviderKind
from spine.schemas.health import Liveness, Readiness, ReadinessCheck
from spine.settings import Settings

router = APIRouter()
logger = get_logger(__name__)

_CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/health")
async def health() -> Liveness:
    return Liveness()


async def _check_database(state: AppState) -> str:
    await state.database.ping()
    return "ok"


async def _check_worker(settings: Settings) -> str:
    async with httpx.AsyncClient(timeout=_CHECK_TIMEOUT_SECONDS) as client:
        response = await client.get(settings.worker.url.rstrip("/") + "/health")
    if response.status_code != 200:
        raise RuntimeError(f"worker answered {response.status_code}")
    return "ok"


async def _timed(name: str, check: Any) -> tuple[str, ReadinessCheck]:
    started = time.perf_counter()
    error: str | None = None
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
            await check
    except Exception as exc:  # any failure means "not ready"
        # /ready is unauthenticated: name the failure's kind, keep hosts and
        # credentials that driver messages may contain in the logs only.
        logger.warning("readiness check failed", extra={"check": name, "error": str(exc)})
        error = type(exc).__name__
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    status = "ok" if error is None else "unavailable"
    return name, ReadinessCheck(status=status, error=error, latency_ms=latency_ms)


@router.get("/ready", responses={503: {"model": Readiness, "description": "not ready"}})
async def ready(response: Response, state: StateDep, registry: RegistryDep) -> Readiness:
    checks = [_timed("database", _check_database(state))]
    if registry.models_of(ProviderKind.LLAMACPP):
        checks.append(_timed("worker", _check_worker(state.settings)))
    results = dict(await asyncio.gather(*checks))
    ok = all(detail.status == "ok" for detail in results.values())
    response.status_code = 200 if ok else 503
    return Readiness(status="ready" if ok else "unavailable", checks=results)
