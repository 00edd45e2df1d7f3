"""The llama.cpp worker's model lifecycle, asked for by an admin through the gateway.

The worker answers `GET /v1/models/list` and `POST /v1/models/{load,unload,reload}`
behind its own bearer token; the gateway holds that token, so clients never do. Each
call names the gateway's principal to the worker (`x-user-id`), so the worker's own
audit log says who asked, and each change is logged here too (`audit`), whatever its
outcome.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from spine.auth.principal import Principal
from spine.errors import (
    ServiceUnavailableError,
    SpineError,
    UpstreamError,
)
from spine.observability import get_logger
from spine.pipeline.targets import worker_token
from spine.settings import Settings

logger = get_logger(__name__)

# Loading a model starts llama-server and reads the file: seconds on a CPU, longer for
# a large GGUF on a GPU host. Under API Gateway's 29 s integration limit.
LIFECYCLE_TIMEOUT_SECONDS = 25.0
LIST_TIMEOUT_SECONDS = 5.0


class LifecycleAction(StrEnum):
    LOAD = "load"
    UNLOAD = "unload"
    RELOAD = "reload"


async def list_models(settings: Settings, principal: Principal) -> dict[str, Any]:
    """The worker's models with their state (`ready`, `unloaded`, `loading`, ...)."""
    return await _call(
        settings, principal, "GET", "/v1/models/list", None, seconds=LIST_TIMEOUT_SECONDS
    )


async def change(
    settings: Settings, principal: Principal, action: LifecycleAction, model: str
) -> dict[str, Any]:
    """Load, unload or reload `model` on the worker; audited whatever the outcome."""
    started = time.monotonic()
    try:
        result = await _call(
            settings,
            principal,
            "POST",
            f"/v1/models/{action.value}",
            {"model": model},
            seconds=LIFECYCLE_TIMEOUT_SECONDS,
        )
    except SpineError as exc:
        _audit(principal, action, model, started, outcome="refused", status=exc.status_code,
               code=exc.code)  # fmt: skip
        raise
    _audit(principal, action, model, started, outcome="done", status=200, code=None,
           state=result.get("state"))  # fmt: skip
    return result


def _audit(
    principal: Principal,
    action: LifecycleAction,
    model: str,
    started: float,
    *,
    outcome: str,
    status: int,
    code: str | None,
    state: Any = None,
) -> None:
    # One structured event per change: who (subject, credential, key, tenant), what,
    # how it ended. The request id is bound to every log line as correlation_id.
    logger.info(
        "worker model lifecycle",
        extra={
            "audit": True,
            "action": action.value,
            "model": model,
            "outcome": outcome,
            "status": status,
            "code": code,
            "state": state,
            "principal": principal.subject,
            "credential": principal.credential,
            "api_key_id": principal.api_key_id,
            "tenant": principal.tenant,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        },
    )


async def _call(
    settings: Settings,
    principal: Principal,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    *,
    seconds: float,
) -> dict[str, Any]:
    import httpx  # noqa: PLC0415 - only the calls that need it pay for the HTTP client

    headers = {"x-user-id": principal.subject}
    token = worker_token(settings)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = settings.worker.url.rstrip("/") + path
    try:
        async with httpx.AsyncClient(timeout=seconds) as client:
            response = await client.request(method, url, json=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise ServiceUnavailableError(
            f"The worker did not answer within {seconds:g} s.", code="worker_timeout"
        ) from exc
    except httpx.HTTPError as exc:
        logger.warning("worker unreachable", extra={"error_class": type(exc).__name__})
        raise ServiceUnavailableError(
            "The worker is not reachable.", code="worker_unavailable"
        ) from exc
    return _answer(response)


class WorkerRefusedError(SpineError):
    """The worker refused the request (unknown model, a file it may not read, a model
    busy loading): the caller sees the worker's own status, type, code and message."""

    def __init__(self, status: int, error_type: str, message: str, code: str | None) -> None:
        super().__init__(message, param="model", code=code)
        self.status_code = status
        self.error_type = error_type


def _answer(response: Any) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code == 200 and isinstance(payload, dict):
        return payload
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    if not isinstance(message, str):
        message = f"The worker answered HTTP {response.status_code}."
    code = error.get("code") if isinstance(error.get("code"), str) else None
    status = int(response.status_code)
    if status == 401:
        # The gateway's worker token is wrong: an operator's problem, not the caller's.
        logger.error("the worker refused the gateway's token", extra={"status": status})
        raise UpstreamError("The worker refused the gateway's credentials.", code="worker_auth")
    if 400 <= status < 500:
        error_type = error.get("type")
        if not isinstance(error_type, str):
            error_type = "invalid_request_error"
        raise WorkerRefusedError(status, error_type, message, code)
    if status == 503:
        raise ServiceUnavailableError(message, code=code or "worker_unavailable")
    raise UpstreamError(message, code=code or "worker_error")
