"""Secrets from AWS Secrets Manager, cached by Powertools' parameters utility.

A warm container fetches each secret once per `max_age` seconds. A secret that holds
a JSON object can be read field by field (`key`).
"""

from __future__ import annotations

import json
from typing import Any

from spine.errors import SpineError

DEFAULT_MAX_AGE_SECONDS = 300


class SecretUnavailableError(SpineError):
    status_code = 500
    error_type = "server_error"
    default_code = "secret_unavailable"


def get_secret(name: str, *, key: str | None = None, max_age: int = DEFAULT_MAX_AGE_SECONDS) -> str:
    from aws_lambda_powertools.utilities import parameters

    try:
        raw: Any = parameters.get_secret(name, max_age=max_age)
    except Exception as exc:  # GetParameterError, botocore errors: all mean "cannot read"
        raise SecretUnavailableError(f"cannot read secret '{name}': {exc}") from exc
    if isinstance(raw, bytes):
        raw = raw.decode()
    if key is None:
        return str(raw)
    try:
        value = json.loads(raw)[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise SecretUnavailableError(f"secret '{name}' has no JSON field '{key}'") from exc
    return str(value)
