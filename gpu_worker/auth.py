"""Bearer-token auth for everything but /health.

The token comes from `SPINE_WORKER_TOKEN`, or from an AWS Secrets Manager secret named
by `SPINE_WORKER_TOKEN_SECRET` (read once at start-up; boto3 is imported only then). The
secret may be the token itself or a JSON object with a `token` field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass

from gpu_worker.config import WorkerSettings
from spine.errors import AuthenticationError, ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id (never the token) and the user it acts for."""

    token_id: str
    user: str | None

    @property
    def name(self) -> str:
        return self.user or self.token_id


def token_id(token: str) -> str:
    """A stable, non-secret name for a token, fit for audit logs."""
    return "tok-" + hashlib.sha256(token.encode()).hexdigest()[:10]


def fetch_secret_token(secret_name: str) -> str:
    import boto3  # noqa: PLC0415 - boto3 is imported only where an AWS service is configured

    client = boto3.client("secretsmanager")
    value = client.get_secret_value(SecretId=secret_name).get("SecretString") or ""
    value = value.strip()
    if value.startswith("{"):
        try:
            field = json.loads(value).get("token")
        except (json.JSONDecodeError, AttributeError):
            field = None
        if not isinstance(field, str):
            raise ConfigError([f"secret '{secret_name}': JSON secret needs a string 'token' field"])
        value = field.strip()
    if not value:
        raise ConfigError([f"secret '{secret_name}': the worker token is empty"])
    return value


def resolve_token(settings: WorkerSettings) -> str | None:
    """The configured token, or None when auth is explicitly switched off.

    Refuses to run without a token unless `insecure_no_auth` is set.
    """
    if settings.token is not None and settings.token.get_secret_value():
        return settings.token.get_secret_value()
    if settings.token_secret:
        return fetch_secret_token(settings.token_secret)
    if settings.insecure_no_auth:
        logger.warning(
            "auth disabled: anyone who can reach this port can use and manage the worker",
            extra={"setting": "insecure_no_auth"},
        )
        return None
    raise ConfigError(
        [
            "no worker token: set SPINE_WORKER_TOKEN or SPINE_WORKER_TOKEN_SECRET, or pass "
            "--insecure-no-auth to run without auth (local development only)"
        ]
    )


class Authenticator:
    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token is not None else None
        self._token_id = token_id(token) if token is not None else "anonymous"

    def authenticate(self, authorization: str | None, user: str | None) -> Principal:
        if self._token is None:
            return Principal(self._token_id, user)
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise AuthenticationError("Missing bearer token in the Authorization header")
        # Constant-time comparison: response timing must not leak the token prefix.
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise AuthenticationError("Incorrect worker token provided")
        return Principal(self._token_id, user)
