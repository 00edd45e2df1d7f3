"""Lambda SnapStart: what a function does before its snapshot is taken, and what it
redoes after each restore.

Lambda runs a SnapStart function's init once per published version, snapshots the
memory, and starts every later instance from that snapshot. So the work done before
the snapshot is paid once, not by the first request of each instance:

- `prime` imports what the function's requests import lazily: every module of the
  `spine` package (a request imports its storage and limits modules on first use),
  and for the functions that call models the provider SDKs and the HTTP client stack
  their first call loads; it loads and validates models.yaml, and runs one
  request through the app that needs no database (an unauthenticated call: middleware,
  routing, error mapping, JSON encoding), so FastAPI's and pydantic's first-call work
  is done too.

What must not be shared by every instance restored from one snapshot is redone
after each restore by `refresh`:

- the database connection: any connection cached before the snapshot points at a
  socket that no longer exists, so it is dropped and the next query connects;
- randomness: `random`'s state is reseeded from the OS (`secrets`, `uuid` and
  `os.urandom` read the kernel every time, which Lambda reseeds on restore);
- secrets: cached values and their clients are dropped, so rotated keys are read.

`enable` registers both with the runtime's hooks (`snapshot_restore_py`, present in
Lambda's Python runtime only); elsewhere it does nothing.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import spine
from spine.observability import get_logger

logger = get_logger(__name__)

# Not imported by priming: the other entry points' modules, and the provider adapters
# (each imports its SDK, 0.5 s or more) unless the function calls models.
_NOT_PRIMED = ("spine.snapstart", "spine.migrations_resource", "spine.maintenance")
_PROVIDERS = "spine.providers"
# Loaded by the first provider call (the SDKs' HTTP transport on asyncio), not by
# importing the SDKs; missing ones are skipped.
HTTP_CLIENT_MODULES = (
    # OpenAI's tokenizer (native): the context check of OpenAI models counts with it.
    "toktok",
    "anyio._backends._asyncio",
    "h11",
    "httpcore",
    "httpcore2",
    "truststore",
    "concurrent.futures.thread",
)
Handler = Callable[[dict[str, Any], Any], Any]


def modules_to_prime(*, calls_models: bool) -> Iterator[str]:
    """Every module of the spine package a function may import lazily, and for the
    functions that call models the provider adapters and their HTTP stack."""
    for module in pkgutil.walk_packages(spine.__path__, "spine."):
        name = module.name
        if name.startswith(_NOT_PRIMED) or name.endswith("__main__"):
            continue
        if name.startswith(_PROVIDERS + ".") and not calls_models:
            continue
        yield name
    if calls_models:
        yield from HTTP_CLIENT_MODULES
    else:
        yield "concurrent.futures.thread"


def prime(app: Any, handler: Handler | None = None, *, calls_models: bool = False) -> None:
    """Before the snapshot: the lazy imports, models.yaml, one request."""
    for name in modules_to_prime(calls_models=calls_models):
        try:
            importlib.import_module(name)
        except ImportError:  # an optional SDK (anthropic), pgserver outside `local`
            logger.info("snapstart prime skipped module", extra={"module": name})
    _complete_pydantic_models()
    state = app.state.spine
    state.registry.current()  # loads and validates models.yaml
    if handler is not None:
        handler(_unauthenticated_event(), _PrimingContext())
    # Whatever the warm-up connected stays out of the snapshot.
    _drop_connections()


def refresh() -> None:
    """After a restore: a new database connection on next use, fresh randomness,
    secrets read again."""
    _drop_connections()
    random.seed(os.urandom(32))
    from spine.aws.secrets import forget_cached_secrets

    forget_cached_secrets()


def enable(app: Any, handler: Handler | None = None, *, calls_models: bool = False) -> bool:
    """Register `prime` and `refresh` with Lambda's SnapStart hooks; False (and
    nothing done) outside a SnapStart runtime."""
    try:
        from snapshot_restore_py import (
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:
        return False
    register_before_snapshot(lambda: prime(app, handler, calls_models=calls_models))
    register_after_restore(refresh)
    return True


# Packages whose pydantic models a request validates or builds: Spine's schemas and
# the SDKs' response types.
_MODEL_PACKAGES = ("spine.", "openai.types", "anthropic.types", "google.genai.types")


def _complete_pydantic_models() -> None:
    """Build the validators pydantic deferred (models with forward references are
    completed on first use), so no request pays for a schema build."""
    import sys

    from pydantic import BaseModel

    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(_MODEL_PACKAGES):
            continue
        for value in list(vars(module).values()):
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and not value.__pydantic_complete__
            ):
                try:
                    value.model_rebuild()
                except Exception as exc:  # a generic or still-unresolvable model
                    logger.debug(
                        "snapstart prime left a model to build on use",
                        extra={"model": value.__qualname__, "error": str(exc)},
                    )


@dataclass
class _PrimingContext:
    """The Lambda context of the warm-up request (the logger reads its fields)."""

    function_name: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "spine")
    )
    function_version: str = "$LATEST"
    invoked_function_arn: str = ""
    memory_limit_in_mb: int = 0
    aws_request_id: str = "snapstart-prime"
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _drop_connections() -> None:
    from spine.storage import db

    db.reset()


def _unauthenticated_event() -> dict[str, Any]:
    """An API Gateway REST event for a path no function serves, with no credentials:
    answered by the app's own 404 without touching the database."""
    return {
        "resource": "/{proxy+}",
        "path": "/snapstart-prime",
        "httpMethod": "GET",
        "headers": {"host": "localhost"},
        "multiValueHeaders": {"host": ["localhost"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "GET",
            "path": "/prod/snapstart-prime",
            "stage": "prod",
            "requestId": "snapstart-prime",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None,
        "isBase64Encoded": False,
    }
