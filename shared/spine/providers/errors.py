"""From an upstream provider's failure to a Spine domain error.

Each adapter catches its own SDK's exceptions and hands the facts (HTTP status, the
provider's message and error code, the response headers) to `from_upstream_status`,
so every provider maps the same way. The statuses a Spine client sees:

- 400 naming the context length -> ContextWindowExceededError, 400 context_length_exceeded
- other 400, 409, 422            -> InvalidRequestError, 400, the upstream's message
- 401, 403 (bad or missing key)  -> UpstreamAuthenticationError, 502 upstream_auth_failed
- 404                            -> NotFoundError, 404 model_not_found
- 413                            -> PayloadTooLargeError, 413 request_too_large
- 429                            -> RateLimitError, 429 rate_limit_exceeded + Retry-After
- 429 insufficient_quota         -> UpstreamError, 502 upstream_quota_exhausted
- 408, 504, Spine's own deadline -> UpstreamTimeoutError, 504 upstream_timeout
- other 5xx, 529, lost link     -> UpstreamError, 502 upstream_error
- an answer Spine cannot parse   -> UpstreamError, 502 upstream_bad_response

Why a bad *upstream* key is a 502 and not a 401: the key that failed is the operator's
provider key from `models.yaml`, not the client's Spine key. A 401 would make every
OpenAI client raise `AuthenticationError` and send the developer hunting for a problem
in their own key; a 5xx says "the gateway failed", which is true, and lets the chat
service treat it like any broken deployment (try the fallback model). The 401 that the
project's issue lists is Spine's own authentication, which lives elsewhere. For the
same reason upstream messages of auth failures are not passed on: they can echo part
of the operator's key.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

from spine.errors import (
    ContextWindowExceededError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServiceUnavailableError,
    SpineError,
    UpstreamError,
    UpstreamTimeoutError,
)
from spine.observability import get_logger

_logger = get_logger(__name__)


class UpstreamAuthenticationError(UpstreamError):
    """The provider refused the operator's key (or it is missing)."""

    default_code = "upstream_auth_failed"


class ProviderNotInstalledError(ServiceUnavailableError):
    """A model needs an optional SDK this deployment was built without.

    A 503 and not a 400: the client's request is fine, this server cannot serve it;
    the fix is a deployment with the extra installed.
    """

    default_code = "provider_not_installed"


# Phrases providers use when the prompt does not fit: OpenAI and vLLM ("maximum context
# length"), Anthropic ("prompt is too long"), Gemini ("input token count ... exceeds the
# maximum number of tokens"), llama-server ("exceeds the available context size").
_CONTEXT_OVERFLOW = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|prompt is too long"
    r"|exceeds the maximum number of tokens|too many tokens|input token count",
    re.IGNORECASE,
)
_CONTEXT_OVERFLOW_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})


def is_context_overflow(message: str, code: str | None = None) -> bool:
    return (code or "") in _CONTEXT_OVERFLOW_CODES or bool(_CONTEXT_OVERFLOW.search(message))


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the provider asks us to wait: `retry-after-ms`, then `retry-after` as
    seconds or an HTTP date. None when the provider did not say."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    if (millis := _number(lowered.get("retry-after-ms"))) is not None:
        return millis / 1000
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    if (seconds := _number(raw)) is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _number(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


def from_upstream_status(
    provider: str,
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    retry_after: float | None = None,
) -> SpineError:
    """The Spine error for an HTTP error answer of `provider`.

    `retry_after` overrides the headers (Gemini puts its delay in the body)."""
    where = f"upstream provider '{provider}'"
    detail = message or f"HTTP {status}"
    if status in (401, 403):
        return UpstreamAuthenticationError(
            f"The {where} rejected the gateway's credentials (HTTP {status}). "
            "This is a server configuration problem, not a problem with your Spine API key.",
            provider=provider,
        )
    if status == 429:
        if code == "insufficient_quota":
            return UpstreamError(
                f"The {where} account has no quota left: {detail}",
                provider=provider,
                code="upstream_quota_exhausted",
            )
        wait = retry_after if retry_after is not None else retry_after_seconds(headers)
        return RateLimitError(f"The {where} is rate limiting: {detail}", retry_after=wait)
    if status == 404:
        return NotFoundError(f"The {where} says: {detail}", param="model", code="model_not_found")
    if status == 413:
        return PayloadTooLargeError(f"The {where} says the request is too large: {detail}")
    if status in (408, 504):
        return UpstreamTimeoutError(f"The {where} timed out: {detail}", provider=provider)
    if 400 <= status < 500:
        if is_context_overflow(detail, code):
            return ContextWindowExceededError(f"The {where} says: {detail}", param="messages")
        return InvalidRequestError(f"The {where} says: {detail}", code=code)
    return UpstreamError(f"The {where} failed (HTTP {status}): {detail}", provider=provider)


def upstream_timeout(provider: str, seconds: float | None = None) -> UpstreamTimeoutError:
    after = f" after {seconds:g}s" if seconds is not None else ""
    return UpstreamTimeoutError(
        f"The upstream provider '{provider}' timed out{after}", provider=provider
    )


def missing_upstream_key(provider: str, model_id: str) -> UpstreamAuthenticationError:
    """The operator configured no key for a provider that needs one."""
    return UpstreamAuthenticationError(
        f"No API key is configured for the upstream provider '{provider}' "
        f"(model '{model_id}'). This is a server configuration problem.",
        provider=provider,
    )


def upstream_unreachable(provider: str, reason: str) -> UpstreamError:
    return UpstreamError(
        f"The connection to the upstream provider '{provider}' failed: {reason}",
        provider=provider,
    )


def upstream_bad_response(provider: str, reason: str) -> UpstreamError:
    return UpstreamError(
        f"The upstream provider '{provider}' sent an answer Spine cannot read: {_brief(reason)}",
        provider=provider,
        code="upstream_bad_response",
    )


_VALIDATOR_SUMMARY = re.compile(r"^\d+ validation errors? for \S+")
_MAX_REASON = 200


def _brief(reason: str) -> str:
    """One short line for the client: a parser's report (pydantic's lists every field,
    internal model names and a link) is summed up; the whole of it is logged."""
    if _VALIDATOR_SUMMARY.match(reason):
        _logger.warning("upstream answer unreadable", extra={"detail": reason[:2000]})
        return "its fields do not have the expected types or shape"
    first = (reason.strip().splitlines() or ["unknown error"])[0]
    return first if len(first) <= _MAX_REASON else first[: _MAX_REASON - 1] + "…"
