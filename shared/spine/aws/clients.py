"""boto3 clients, created on first use and reused by a warm container.

Short timeouts and few retries: a config or secret read happens on a request's path
or at cold start, where boto3's defaults (60 s reads, several retries) would hang a
request far past the API Gateway limit. The region and endpoint come from the usual
AWS variables (`AWS_DEFAULT_REGION` or `AWS_REGION`, `AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_S3`, ...); a client is reused only while they stay the same, so
pointing them at moto (tests, the local stack) takes effect without a restart.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 2

_LOCATION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")


Location = tuple[tuple[str, str], ...]


def aws_location() -> Location:
    """The variables that decide where a client sends its calls."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_LOCATION_VARIABLES)))


def aws_client(service: str) -> Any:
    """The shared client for `service` ("s3", "appconfigdata", "secretsmanager")."""
    return client_at(service, aws_location())


@lru_cache(maxsize=16)
def client_at(service: str, location: Location) -> Any:
    # `location` is only the cache key: boto3 reads the same variables itself.
    import boto3  # noqa: PLC0415 - boto3 is imported only where an AWS service is configured
    from botocore.config import Config  # noqa: PLC0415 - boto3 is imported only where an AWS service is configured

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    )
    # botocore reads only AWS_DEFAULT_REGION; Lambda sets AWS_REGION too, and some
    # tools set only that one.
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None
    return boto3.session.Session().client(service, config=config, region_name=region)  # type: ignore[call-overload]


def error_code(exc: BaseException) -> str:
    """AWS's error code of a botocore error, or the class of the innermost error
    (Powertools wraps botocore's): safe to show, unlike a message, which may name the
    account and role."""
    seen: BaseException | None = exc
    innermost = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
        innermost = seen
        seen = seen.__cause__ or seen.__context__
    return type(innermost).__name__
