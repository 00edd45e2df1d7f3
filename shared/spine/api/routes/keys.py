"""Key administration: POST/GET /v1/keys, GET/PATCH/DELETE /v1/keys/{key_id}.

Reads need the `keys:read` scope, changes `keys:write` (`admin` holds both); who may
touch which key is `spine.auth.key_admin`'s to say. The secret is returned once, by
POST; listings show the key's prefix only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from spine.api.body import parse_body
from spine.api.deps import StateDep, require_scope
from spine.api.openapi import json_body, query_params
from spine.api.query import parse_query
from spine.auth import key_admin
from spine.auth.principal import Principal
from spine.schemas.keys import KeyCreate, KeyUpdate
from spine.storage.api_keys import ApiKeyRow

router = APIRouter()

ReaderDep = Annotated[Principal, Depends(require_scope("keys:read"))]
WriterDep = Annotated[Principal, Depends(require_scope("keys:write"))]


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_revoked: bool = False


@router.post("/v1/keys", status_code=201, openapi_extra=json_body(KeyCreate))
async def create_key(request: Request, principal: WriterDep, state: StateDep) -> JSONResponse:
    body = await parse_body(request, KeyCreate, stored=True)
    plaintext, row = await key_admin.create(principal, body, state.settings)
    # The only time the secret is shown; it must not sit in any cache.
    return JSONResponse(
        {**key_object(row), "key": plaintext},
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/v1/keys", openapi_extra=query_params(ListQuery))
async def list_keys(request: Request, principal: ReaderDep) -> dict[str, Any]:
    query = parse_query(request, ListQuery)
    rows = await key_admin.list_keys(principal, include_revoked=query.include_revoked)
    return {"object": "list", "data": [key_object(row) for row in rows]}


@router.get("/v1/keys/{key_id}")
async def get_key(key_id: str, principal: ReaderDep) -> dict[str, Any]:
    return key_object(await key_admin.get(principal, key_id))


@router.patch("/v1/keys/{key_id}", openapi_extra=json_body(KeyUpdate))
async def update_key(key_id: str, request: Request, principal: WriterDep) -> dict[str, Any]:
    body = await parse_body(request, KeyUpdate, stored=True)
    return key_object(await key_admin.update(principal, key_id, body))


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, principal: WriterDep) -> dict[str, Any]:
    return key_object(await key_admin.revoke(principal, key_id))


def key_object(row: ApiKeyRow) -> dict[str, Any]:
    def seconds(value: Any) -> int | None:
        return int(value.timestamp()) if value is not None else None

    def usd(value: Any) -> str | None:
        return None if value is None else format(value.normalize(), "f")

    return {
        "object": "api_key",
        "id": str(row.id),
        "name": row.name,
        "prefix": row.display_prefix,
        "principal": row.principal,
        "tenant": row.tenant,
        "scopes": list(row.scopes or ()),
        "tier": row.tier,
        "created_at": seconds(row.created_at),
        "expires_at": seconds(row.expires_at),
        "revoked_at": seconds(row.revoked_at),
        "last_used_at": seconds(row.last_used_at),
        # null: the [limits] default applies; 0: no limit.
        "limits": {
            "rpm": row.rpm,
            "tpm": row.tpm,
            "daily_budget_usd": usd(row.daily_budget_usd),
            "monthly_budget_usd": usd(row.monthly_budget_usd),
        },
    }
