"""POST /v1/auth/token: trade an API key for a short-lived JWT signed by Spine.

Only an API key buys a token: a token never buys another (which would make
revoking the key pointless), whatever `verify_jwt` says for this function.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from spine.api.body import parse_body
from spine.api.deps import StateDep
from spine.api.openapi import json_body
from spine.auth.api_keys import authenticate_api_key
from spine.auth.authenticate import bearer_token
from spine.auth.jwt import issue_token
from spine.errors import AuthenticationError
from spine.schemas.auth import TokenPublic

router = APIRouter()


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Shorter than auth.token_ttl_seconds if the client wants; never longer.
    expires_in: Annotated[int, Field(ge=1)] | None = None
    # A subset of the key's scopes; all of them when omitted.
    scopes: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = None


@router.post("/v1/auth/token", openapi_extra=json_body(TokenRequest, required=False))
async def create_token(request: Request, response: Response, state: StateDep) -> TokenPublic:
    token = bearer_token(request.headers.get("authorization"))
    prefix = state.settings.auth.api_key_prefix
    if not token.startswith(prefix):
        raise AuthenticationError(
            f"A token is only issued for an API key: send Authorization: Bearer {prefix}….",
            code="api_key_required",
        )
    principal = await authenticate_api_key(state.database, token)
    raw = await request.body()
    body = await parse_body(request, TokenRequest) if raw.strip() else TokenRequest()
    issued = issue_token(principal, state.settings, expires_in=body.expires_in, scopes=body.scopes)
    # RFC 6749 §5.1: responses carrying tokens must not be cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return TokenPublic(
        access_token=issued.token,
        expires_in=issued.expires_in,
        expires_at=issued.expires_at,
        scope=" ".join(sorted(issued.scopes)),
    )
