"""Response of the token exchange, POST /v1/auth/token (RFC 6749 §5.1's fields)."""

from __future__ import annotations

from typing import Literal

from spine.schemas.public import PublicModel


class TokenPublic(PublicModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int  # seconds from now
    expires_at: int  # Unix seconds
    scope: str  # the token's scopes, space-separated
