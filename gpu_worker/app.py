"""The control plane's HTTP API (FastAPI): OpenAI routes, tokenize, lifecycle, health,
metrics.

Handlers stay thin: parse, authenticate, call the proxy or the model manager. Errors are
domain exceptions mapped to OpenAI error bodies by the handlers installed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpu_worker.audit import AuditLog
from gpu_worker.auth import Authenticator, Principal, resolve_token
from gpu_worker.cloudwatch import ModelLoad, Publisher
from gpu_worker.config import WorkerSettings
from gpu_worker.errors import ModelBusyError, body_of
from gpu_worker.metrics import WorkerMetrics, relabel_engine_metrics
from gpu_worker.proxy import Proxy
from gpu_worker.scheduler import Priority
from gpu_worker.supervisor import ManagedModel, ModelManager, ModelState
from gpu_worker.tokenize import count_tokens, parse_tokenize_body
from spine.errors import (
    ConfigError,
    InvalidRequestError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    SpineError,
    error_body,
)
from spine.registry import ProviderKind, load_registry
from spine.registry.schema import ModelEntry

logger = logging.getLogger(__name__)


class WorkerState:
    """Everything a request handler needs, built once per app."""

    def __init__(self, settings: WorkerSettings, entries: list[ModelEntry], token: str | None):
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.audit = AuditLog(settings.audit_log)
        self.auth = Authenticator(token)
        self.manager = ModelManager(settings, entries, self.metrics, self.audit)
        self.proxy = Proxy(self.manager, self.metrics)
        self.default_model = self._default(entries)
        self.started = time.time()

    def _default(self, entries: list[ModelEntry]) -> ManagedModel:
        name = self.settings.default_model
        if name is None:
            return self.manager.models[entries[0].id]
        try:
            return self.manager.lookup(name)
        except SpineError as exc:
            raise ConfigError([f"default model '{name}' is not a llamacpp model"]) from exc


def load_entries(settings: WorkerSettings) -> list[ModelEntry]:
    registry = load_registry(settings.models_path)
    entries = registry.models_of(ProviderKind.LLAMACPP)
    if not entries:
        raise ConfigError([f"{settings.models_path}: no model has 'provider: llamacpp'"])
    return entries


def _state(request: Request) -> WorkerState:
    state: WorkerState = request.app.state.worker
    return state


def authenticate(request: Request) -> Principal:
    return _state(request).auth.authenticate(
        request.headers.get("authorization"), request.headers.get("x-user-id")
    )


Caller = Annotated[Principal, Depends(authenticate)]


def actor_of(principal: Principal) -> str:
    """`<token id>` or `<token id>:<user>`, as written to the audit log."""
    return f"{principal.token_id}:{principal.user}" if principal.user else principal.token_id


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body exceeds {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLargeError(f"The request body exceeds {limit} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(
            f"The request body is not valid JSON: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object", code="invalid_json")
    return body


def model_name(body: dict[str, Any]) -> str:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("Missing required parameter: 'model'", param="model")
    return name


def priority_of(request: Request, settings: WorkerSettings) -> Priority:
    """`x-priority` wins; else the key tier header mapped by `tier_priorities`; else normal.

    Clients never reach the worker directly (it needs the worker token); the gateway sets
    these headers from the caller's key.
    """
    raw = request.headers.get("x-priority")
    source = "x-priority"
    if raw is None:
        tier = request.headers.get("x-key-tier")
        raw = settings.tier_priorities.get(tier.strip().lower()) if tier else None
        source = "x-key-tier"
    if raw is None:
        return Priority.NORMAL
    try:
        return Priority.parse(raw)
    except KeyError:
        raise InvalidRequestError(
            f"Invalid {source} priority '{raw}': expected high, normal or low", param=source
        ) from None


def describe(model: ManagedModel) -> dict[str, Any]:
    engine = model.engine
    idle_for = time.monotonic() - model.last_used if model.last_used else None
    return {
        "id": model.id,
        "object": "model",
        "model": model.entry.model,
        "aliases": list(model.entry.aliases),
        "state": model.state.value,
        "slots": model.scheduler.slots,
        "in_flight": model.scheduler.active,
        "queued": model.scheduler.queued,
        "memory_bytes": engine.rss_bytes() if engine else None,
        "pid": engine.pid if engine and engine.running else None,
        # The engine's loopback port, for operators debugging one engine directly.
        "port": engine.port if engine and engine.running else None,
        "loaded_at": model.loaded_at,
        "idle_seconds": round(idle_for, 3) if idle_for is not None else None,
        "last_error": model.last_error,
        "context_size": model.config.context_size,
        "embeddings": model.config.embeddings,
    }


def create_app(settings: WorkerSettings, *, token: str | None = None) -> FastAPI:
    """Build the app. `token` defaults to the configured one (refusing to run without)."""
    entries = load_entries(settings)
    worker = WorkerState(settings, entries, token if token is not None else resolve_token(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.manager.start()
        preload: asyncio.Task[Any] | None = None
        if settings.preload_default:
            preload = asyncio.create_task(_preload(worker))
        publisher = _metrics_publisher(worker)
        publishing = asyncio.create_task(publisher.run()) if publisher is not None else None
        try:
            yield
        finally:
            if publishing is not None:
                publishing.cancel()
            if preload is not None:
                preload.cancel()
            logger.info("worker stopping, stopping engines")
            await worker.proxy.aclose()
            await worker.manager.shutdown()

    app = FastAPI(title="Spine llama.cpp worker", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.worker = worker
    _install_error_handlers(app)
    app.include_router(_public_routes())
    app.include_router(_protected_routes(), dependencies=[Depends(authenticate)])
    return app


def _metrics_publisher(worker: WorkerState) -> Publisher | None:
    settings = worker.settings
    if not settings.metrics_namespace:
        return None

    def sample() -> list[ModelLoad]:
        return [
            ModelLoad(m.id, m.scheduler.queued, m.scheduler.active, m.scheduler.slots)
            for m in worker.manager.models.values()
        ]

    return Publisher(
        settings.metrics_namespace,
        settings.metrics_service,
        sample,
        interval=settings.metrics_interval_seconds,
    )


async def _preload(worker: WorkerState) -> None:
    try:
        await worker.manager.ensure_ready(worker.default_model, action="preload")
    except SpineError as exc:
        logger.error(
            "default model failed to load",
            extra={"model": worker.default_model.id, "reason": exc.message},
        )


def _public_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return router


def _protected_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/ready")
    async def ready(request: Request) -> dict[str, Any]:
        model = _state(request).default_model
        if model.state is not ModelState.READY:
            raise ServiceUnavailableError(
                f"The default model '{model.id}' is {model.state.value}"
                + (f": {model.last_error}" if model.last_error else ""),
                code="not_ready",
            )
        return {"status": "ready", "model": model.id}

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        worker = _state(request)
        for model in worker.manager.models.values():
            worker.metrics.queue_depth.labels(model.id).set(model.scheduler.queued)
            worker.metrics.in_flight.labels(model.id).set(model.scheduler.active)
        engines = [
            (m.id, m.engine) for m in worker.manager.models.values()
            if m.state is ModelState.READY and m.engine is not None
        ]  # fmt: skip
        texts = await asyncio.gather(*(_engine_metrics(worker, e.base_url) for _, e in engines))
        merged = relabel_engine_metrics(
            (model_id, text) for (model_id, _), text in zip(engines, texts, strict=True) if text
        )
        return Response(worker.metrics.render() + merged.encode(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/v1/models")
    async def list_openai(request: Request) -> dict[str, Any]:
        worker = _state(request)
        return {
            "object": "list",
            "data": [
                {
                    "id": m.id,
                    "object": "model",
                    "created": int(worker.started),
                    "owned_by": m.entry.owned_by or "spine",
                }
                for m in worker.manager.models.values()
            ],
        }

    @router.get("/v1/models/list")
    async def list_models(request: Request) -> dict[str, Any]:
        models = _state(request).manager.models.values()
        return {"object": "list", "data": [describe(m) for m in models]}

    @router.get("/v1/models/active")
    async def active_models(request: Request) -> dict[str, Any]:
        models = _state(request).manager.models.values()
        return {"object": "list", "data": [describe(m) for m in models if m.holds_engine]}

    for action in ("load", "unload", "reload"):
        router.add_api_route(f"/v1/models/{action}", _lifecycle(action), methods=["POST"])

    for path, endpoint in (
        ("/v1/chat/completions", "chat"),
        ("/v1/completions", "completions"),
        ("/v1/embeddings", "embeddings"),
    ):
        router.add_api_route(path, _inference(endpoint), methods=["POST"])
    router.add_api_route("/v1/tokenize", _tokenize, methods=["POST"])
    return router


async def _engine_metrics(worker: WorkerState, base_url: str) -> str:
    """One engine's metrics text; "" when it cannot answer (a scrape never fails on it)."""
    for _ in range(2):  # a second try on a fresh connection if a pooled one was stale
        try:
            response = await worker.proxy.client.get(base_url + "/metrics", timeout=2.0)
        except httpx.TransportError:
            continue
        return response.text if response.status_code == 200 else ""
    return ""


def _inference(endpoint: str) -> Any:
    async def handler(request: Request, principal: Caller) -> Response:
        worker = _state(request)
        body = await read_json(request, worker.settings.max_body_bytes)
        model = worker.manager.lookup(model_name(body))
        if endpoint == "embeddings" and not model.config.embeddings:
            raise InvalidRequestError(
                f"The model '{model.id}' does not serve embeddings (engine.embeddings is off)",
                param="model",
                code="unsupported_endpoint",
            )
        if endpoint != "embeddings" and model.config.embeddings:
            raise InvalidRequestError(
                f"The model '{model.id}' is an embeddings model", param="model",
                code="unsupported_endpoint",
            )  # fmt: skip
        priority = priority_of(request, worker.settings)
        status = "error"
        try:
            response = await worker.proxy.handle(
                model=model, endpoint=endpoint, body=body, priority=priority,
                user=principal.name, actor=actor_of(principal),
            )  # fmt: skip
            status = str(response.status_code)
            return response
        except SpineError as exc:
            status = str(exc.status_code)
            raise
        finally:
            worker.metrics.requests.labels(model.id, endpoint, status).inc()

    handler.__name__ = f"{endpoint}_handler"
    return handler


async def _tokenize(request: Request, principal: Caller) -> dict[str, Any]:
    """Prompt tokens of a chat request or a text prompt, counted by the model's engine.
    No scheduler slot: see gpu_worker.tokenize."""
    worker = _state(request)
    body = await read_json(request, worker.settings.max_body_bytes)
    model = worker.manager.lookup(model_name(body))
    status = "error"
    try:
        count = await count_tokens(
            worker.proxy, model, parse_tokenize_body(body), actor_of(principal)
        )
        status = "200"
    except SpineError as exc:
        status = str(exc.status_code)
        raise
    finally:
        worker.metrics.requests.labels(model.id, "tokenize", status).inc()
    return {"object": "tokenize", "model": model.id, "count": count}


def _lifecycle(action: str) -> Any:
    async def handler(request: Request, principal: Caller) -> dict[str, Any]:
        worker = _state(request)
        manager = worker.manager
        actor = actor_of(principal)
        started = time.monotonic()
        requested = "?"

        def refused(exc: SpineError) -> None:
            # Loads and unloads that ran are audited by the manager; refusals here.
            worker.audit.record(
                actor=actor, action=action, model=requested, result="refused",
                duration_s=time.monotonic() - started, error=exc.message, code=exc.code,
            )  # fmt: skip

        try:
            body = await read_json(request, 64 * 1024)
            requested = model_name(body)
            model = manager.lookup(requested)
        except SpineError as exc:
            refused(exc)
            raise
        if action == "unload":
            try:
                was_loaded = await manager.unload(model, actor)
            except ModelBusyError as exc:
                refused(exc)
                raise
            if not was_loaded:
                worker.audit.record(
                    actor=actor, action="unload", model=model.id, result="noop",
                    duration_s=time.monotonic() - started,
                )  # fmt: skip
            return {**describe(model), "unloaded": was_loaded}
        already = model.state is ModelState.READY and model.load_task is None
        try:
            if action == "reload":
                await manager.reload(model, actor)
            else:
                await manager.load(model, actor)
        except ModelBusyError as exc:
            refused(exc)
            raise
        if action == "load" and already:
            worker.audit.record(
                actor=actor, action="load", model=model.id, result="noop",
                duration_s=time.monotonic() - started,
            )  # fmt: skip
        return {**describe(model), "seconds": round(time.monotonic() - started, 3)}

    handler.__name__ = f"{action}_handler"
    return handler


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SpineError)
    async def _spine(_: Request, exc: SpineError) -> JSONResponse:
        if exc.status_code >= 500:
            logger.warning("request failed", extra={"status": exc.status_code, "code": exc.code})
        return JSONResponse(body_of(exc), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = "Unknown request URL. Please check the URL and method."
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(
            error_body(message, kind), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"error_class": type(exc).__name__})
        return JSONResponse(
            error_body("The worker had an error while processing your request.", "server_error"),
            status_code=500,
        )
