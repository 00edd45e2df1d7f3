"""Wrap an ASGI app as a Lambda handler (API Gateway REST and HTTP APIs, ALB)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

from spine.observability import bind_function, get_tracer

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _tracing_enabled() -> bool:
    # Deployed only: sam local and the emulator set AWS_SAM_LOCAL, tests set neither.
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("AWS_SAM_LOCAL")


def make_handler(app: FastAPI) -> LambdaHandler:
    # lifespan off: nothing to start per container; connections open on first use.
    adapter = Mangum(app, lifespan="off")
    cold = [True]

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        bind_function(
            getattr(context, "function_name", ""),
            function_arn=getattr(context, "invoked_function_arn", ""),
            function_memory_size=getattr(context, "memory_limit_in_mb", ""),
            function_request_id=getattr(context, "aws_request_id", ""),
            cold_start=cold[0],
        )
        cold[0] = False
        return adapter(event, context)

    if _tracing_enabled():
        # X-Ray segment per invocation; the SDK is imported only where it is used.
        traced: LambdaHandler = get_tracer().capture_lambda_handler(handler)
        return traced
    return handler
