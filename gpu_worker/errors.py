"""The worker's domain errors, and the one place that maps them to OpenAI error bodies.

All are `spine.errors.SpineError`s, so they carry status, type, param and code.
"""

from __future__ import annotations

from typing import Any

from spine.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    SpineError,
    UpstreamError,
    error_body,
)


class ModelPathForbiddenError(PermissionDeniedError):
    """A model path points outside the configured model directories."""

    default_code = "model_path_forbidden"


class ModelFileNotFoundError(NotFoundError):
    default_code = "model_file_not_found"


class ModelFileInvalidError(InvalidRequestError):
    """The file exists but is not a GGUF file, or the engine could not load it."""

    status_code = 422
    default_code = "model_file_invalid"


class ModelLoadError(InvalidRequestError):
    """The engine process exited or never became healthy while loading the model."""

    status_code = 422
    default_code = "model_load_failed"


class ModelBusyError(SpineError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "model_busy"


class QueueFullError(RateLimitError):
    default_code = "queue_full"


class NoCapacityError(ServiceUnavailableError):
    """Every loaded model is busy, so none can be unloaded to make room for a new one."""

    default_code = "no_capacity"


class EngineFailedError(UpstreamError):
    """The engine process died or dropped the connection mid-request."""

    default_code = "engine_failed"


class LlamaServerNotFoundError(ServiceUnavailableError):
    default_code = "llama_server_not_found"


def body_of(exc: SpineError) -> dict[str, Any]:
    return error_body(exc.message, exc.error_type, exc.param, exc.code)
