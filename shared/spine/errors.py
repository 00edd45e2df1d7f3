"""Domain exceptions.

Raised by every layer below the HTTP apps and mapped to OpenAI-style error bodies in
exactly one place (`spine.api.errors`). Each carries what the mapping needs: the
HTTP status, the OpenAI error `type`, the offending `param` and a stable `code`.
"""

from __future__ import annotations

from typing import Any


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape, which every Spine service answers with."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class SpineError(Exception):
    """Base of every error Spine reports to a client."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = dict(headers or {})


class InvalidRequestError(SpineError):
    """The request is malformed or names something that cannot be served."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextWindowExceededError(InvalidRequestError):
    default_code = "context_length_exceeded"


class PayloadTooLargeError(InvalidRequestError):
    status_code = 413
    default_code = "request_too_large"


class AuthenticationError(SpineError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(SpineError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(SpineError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ConflictError(SpineError):
    """The request clashes with stored state (a name already taken)."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class ModelNotFoundError(NotFoundError):
    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist", param="model")
        self.model = model


class RateLimitError(SpineError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        merged = dict(headers or {})
        if retry_after is not None:
            # Retry-After is whole seconds; never advertise 0 for a real wait.
            merged["Retry-After"] = str(max(1, round(retry_after + 0.499)))
        super().__init__(message, code=code, headers=merged)
        self.retry_after = retry_after


class QuotaExceededError(RateLimitError):
    """A budget (USD) would be exceeded; OpenAI reports this as 429 insufficient_quota."""

    default_code = "insufficient_quota"


class UpstreamError(SpineError):
    """The provider failed in a way the client cannot fix (5xx, bad reply)."""

    status_code = 502
    error_type = "upstream_error"
    default_code = "upstream_error"

    def __init__(self, message: str, *, provider: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.provider = provider


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    default_code = "upstream_timeout"


class ServiceUnavailableError(SpineError):
    """A dependency of Spine itself (database, worker) is down."""

    status_code = 503
    error_type = "service_unavailable"
    default_code = "service_unavailable"


class ClientDisconnectedError(SpineError):
    """The client went away mid-stream. Never sent (nobody is listening); it marks
    the usage row of the cut stream (499, nginx's "client closed request")."""

    status_code = 499
    error_type = "client_error"
    default_code = "client_disconnected"


class ConfigError(Exception):
    """A configuration file failed validation. Never reaches a client as such."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
