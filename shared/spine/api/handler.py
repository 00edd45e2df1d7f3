"""Wrap an ASGI app as a Lambda handler (API Gateway REST and HTTP APIs, ALB)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

from spine.observability import ROOT_LOGGER

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_handler(app: FastAPI) -> LambdaHandler:
    # lifespan off: nothing to start per container; connections open on first use.
    adapter = Mangum(app, lifespan="off")

    @ROOT_LOGGER.inject_lambda_context(clear_state=False)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return adapter(event, context)

    return handler
