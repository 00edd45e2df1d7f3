"""The HS256 secret: `SPINE_JWT_SECRET`, else the Secrets Manager secret named by
`auth.jwt_secret_name` (cached per container by `spine.aws.secrets`).

The same secret signs Spine's own tokens and verifies HS* tokens of an identity
provider that shares it (a Supabase project's legacy JWT secret).
"""

from __future__ import annotations

import hashlib

from spine.errors import SpineError
from spine.settings import Settings

# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32


class JwtSecretError(SpineError):
    """The configured secret is unusable: a deployment fault, never the client's."""

    status_code = 500
    error_type = "server_error"
    default_code = "jwt_secret_invalid"


def jwt_secret(settings: Settings) -> str | None:
    """The secret, or None when neither the variable nor a secret name is set."""
    secret = settings.jwt_secret
    if secret is None and settings.auth.jwt_secret_name:
        from spine.aws.secrets import get_secret  # noqa: PLC0415 - boto3 is imported only where an AWS service is configured

        secret = get_secret(settings.auth.jwt_secret_name, max_age=settings.secrets.max_age_seconds)
    if secret is None:
        return None
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise JwtSecretError(
            f"The server's JWT secret is shorter than {MIN_SECRET_BYTES} bytes; "
            "refusing to sign or verify with it."
        )
    return secret


def secret_kid(secret: str) -> str:
    """A stable `kid` for the secret: names it without revealing anything about it
    (a digest of a 256-bit secret), so a token signed before a rotation is reported
    as such rather than as a bad signature."""
    return "spine-" + hashlib.sha256(b"spine-jwt-kid\x00" + secret.encode("utf-8")).hexdigest()[:16]
