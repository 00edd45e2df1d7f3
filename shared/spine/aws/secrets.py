"""Secrets from AWS Secrets Manager, cached by Powertools' parameters utility.

A warm container fetches each secret once per `max_age` seconds, so a rotated value
is used at most `max_age` seconds after the rotation. A secret that holds a JSON
object can be read field by field (`key`).

The Powertools provider wraps our own boto3 client (short timeouts, the current
region and endpoint; see `spine.aws.clients`) rather than Powertools' process-wide
default, which keeps whatever endpoint was set when it was first used.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from spine.aws.clients import Location, aws_location, client_at, error_code
from spine.errors import SpineError
from spine.observability import get_logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

logger = get_logger(__name__)

DEFAULT_MAX_AGE_SECONDS = 300


class SecretUnavailableError(SpineError):
    status_code = 500
    error_type = "server_error"
    default_code = "secret_unavailable"


def get_secret(name: str, *, key: str | None = None, max_age: int = DEFAULT_MAX_AGE_SECONDS) -> str:
    """The secret's value (or its JSON field `key`). Errors name the secret and the
    field, never a value; AWS's own message (account, role) goes to the log only."""
    try:
        raw: Any = _provider().get(name, max_age=max_age)
    except Exception as exc:  # GetParameterError, botocore errors: all mean "cannot read"
        logger.warning(
            "secret unreadable",
            extra={"secret": name, "error_code": error_code(exc), "error": str(exc)},
        )
        raise SecretUnavailableError(
            f"The server could not read the secret '{name}' ({error_code(exc)})."
        ) from None
    if isinstance(raw, bytes):
        raw = raw.decode()
    if key is None:
        return str(raw)
    try:
        value = json.loads(raw)[key]
    except (ValueError, KeyError, TypeError):
        # `from None`: a JSON error's context holds the document, i.e. the secret.
        raise SecretUnavailableError(f"The secret '{name}' has no JSON field '{key}'.") from None
    return str(value)


def forget_cached_secrets() -> None:
    """Drop every cached secret value and the clients that fetched them, so the next
    read asks Secrets Manager again (a SnapStart restore: the snapshot may be days
    old, and its clients' connections are gone)."""
    _provider_at.cache_clear()
    client_at.cache_clear()


def _provider() -> SecretsProvider:
    return _provider_at(aws_location())


@lru_cache(maxsize=4)
def _provider_at(location: Location) -> SecretsProvider:
    # One provider (and value cache) per location: a new endpoint starts a clean cache.
    from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415 - Powertools' parameters only where a secret is read

    return SecretsProvider(boto3_client=client_at("secretsmanager", location))
