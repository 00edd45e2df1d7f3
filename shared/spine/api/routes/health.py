"""GET /health (the process answers) and GET /ready (its dependencies answer)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from spine.api.app import AppState
from spine.api.deps import RegistryDep, StateDep
from spine.observability import get_logger
from spine.registry.schema import ProviderKind
from spine.settings import Settings

router = APIRouter()
logger = get_logger(__name__)

_CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


async def _check_database(state: AppState) -> str:
    await state.database.ping()
    return "ok"


async def _check_worker(settings: Settings) -> str:
    async with httpx.AsyncClient(timeout=_CHECK_TIMEOUT_SECONDS) as client:
        response = await client.get(settings.worker.url.rstrip("/") + "/health")
    if response.status_code != 200:
        raise RuntimeError(f"worker answered {response.status_code}")
    return "ok"


async def _timed(name: str, check: Any) -> tuple[str, dict[str, Any]]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
            status = await check
        detail: dict[str, Any] = {"status": status}
    except Exception as exc:  # any failure means "not ready"
        # /ready is unauthenticated: name the failure's kind, keep hosts and
        # credentials that driver messages may contain in the logs only.
        logger.warning("readiness check failed", extra={"check": name, "error": str(exc)})
        detail = {"status": "unavailable", "error": type(exc).__name__}
    detail["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return name, detail


@router.get("/ready")
async def ready(state: StateDep, registry: RegistryDep) -> JSONResponse:
    checks = [_timed("database", _check_database(state))]
    if registry.models_of(ProviderKind.LLAMACPP):
        checks.append(_timed("worker", _check_worker(state.settings)))
    results = dict(await asyncio.gather(*checks))
    ok = all(detail["status"] == "ok" for detail in results.values())
    return JSONResponse(
        {"status": "ready" if ok else "unavailable", "checks": results},
        status_code=200 if ok else 503,
    )
