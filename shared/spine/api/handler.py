"""Wrap an ASGI app as a Lambda handler (API Gateway REST and HTTP APIs, ALB)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

from spine.observability import ROOT_LOGGER, get_tracer

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _tracing_enabled() -> bool:
    # Deployed only: sam local and the emulator set AWS_SAM_LOCAL, tests set neither.
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("AWS_SAM_LOCAL")


def make_handler(app: FastAPI) -> LambdaHandler:
    # lifespan off: nothing to start per container; connections open on first use.
    adapter = Mangum(app, lifespan="off")

    @ROOT_LOGGER.inject_lambda_context(clear_state=False)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return adapter(event, context)

    if _tracing_enabled():
        # X-Ray segment per invocation; the SDK is imported only where it is used.
        traced: LambdaHandler = get_tracer().capture_lambda_handler(handler)
        return traced
    return handler
