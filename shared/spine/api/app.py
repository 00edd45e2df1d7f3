"""Build one FastAPI app per Lambda function from routers in `spine.api.routes`.

Settings and the registry are loaded and validated here, once per container: a
function whose config fails validation fails to start rather than serve it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware

from spine.api import openapi
from spine.api.anthropic_errors import AnthropicErrorShape
from spine.api.errors import install_error_handlers
from spine.api.middleware import RequestContextMiddleware
from spine.aws.live_registry import open_registry_source
from spine.ledger.recorder import PostgresUsageRecorder, UsageRecorder
from spine.ledger.spool import spool_for
from spine.observability import bind_function, get_logger
from spine.registry.source import RegistrySource
from spine.settings import Settings, get_settings
from spine.storage.db import Database, as_service_error

logger = get_logger(__name__)


@dataclass
class AppState:
    function_name: str
    settings: Settings
    registry: RegistrySource
    recorder: UsageRecorder
    database: Database
    verify_jwt: bool


def behind_web_adapter() -> bool:
    """True in a Lambda function served through Lambda Web Adapter (template.yaml sets
    its wrapper for streaming functions), read when the app is built."""
    return bool(os.environ.get("AWS_LWA_INVOKE_MODE"))


def create_app(
    function_name: str,
    routers: list[APIRouter],
    *,
    settings: Settings | None = None,
    registry: RegistrySource | None = None,
    recorder: UsageRecorder | None = None,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """`max_body_bytes`: the function's own body limit, above `[service]`'s (the files
    function takes file content)."""
    settings = settings or get_settings()
    if registry is None:
        registry = open_registry_source(settings)
    verify_jwt = settings.function(function_name).verify_jwt
    if behind_web_adapter():
        # No Lambda context reaches an app behind the adapter: its logs name the
        # function from the runtime's variable (one function per process there).
        bind_function(os.environ.get("AWS_LAMBDA_FUNCTION_NAME", function_name))
    if not verify_jwt and function_name != "health":
        # Supabase semantics: verify_jwt = false makes the function public.
        logger.warning(
            "authentication disabled for function: every request is anonymous",
            extra={"function": function_name},
        )
    app = FastAPI(
        title=f"Spine {function_name}",
        # No docs routes of FastAPI's own: the document is served at a path
        # template.yaml routes to this function (openapi.serve_document).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    database = Database()
    app.state.spine = AppState(
        function_name=function_name,
        settings=settings,
        registry=registry,
        recorder=recorder or PostgresUsageRecorder(database, spool_for(settings)),
        database=database,
        verify_jwt=verify_jwt,
    )
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    openapi.serve_document(app, function_name)
    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=max(max_body_bytes or 0, settings.service.max_body_bytes),
        behind_web_adapter=behind_web_adapter(),
        translate_error=as_service_error,
    )
    # Outside the request middleware, so its error answers (413, 500, 503) are
    # reshaped too on the Messages routes.
    app.add_middleware(AnthropicErrorShape)
    cors = settings.cors
    if cors.allow_origins:
        # Outermost, so error answers (413, 503, 500) carry the CORS headers too and
        # a browser shows the caller the error rather than a CORS failure.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors.allow_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=cors.allow_headers,
            expose_headers=cors.expose_headers,
            max_age=cors.max_age_seconds,
        )
    return app
