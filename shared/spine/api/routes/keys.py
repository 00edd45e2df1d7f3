"""Key administration: POST/GET /v1/keys, GET/PATCH/DELETE /v1/keys/{key_id}.

Reads need the `keys:read` scope, changes `keys:write` (`admin` holds both); who may
touch which key is `spine.auth.key_admin`'s to say. The secret is returned once, by
POST; listings show the key's prefix only.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict

from spine.api.body import parse_body
from spine.api.deps import StateDep, require_scope
from spine.api.openapi import json_body, query_params
from spine.api.query import epoch, parse_query
from spine.auth import key_admin
from spine.auth.principal import Principal
from spine.schemas.keys import (
    KeyCreate,
    KeyCreated,
    KeyLimitsPublic,
    KeyList,
    KeyPublic,
    KeyUpdate,
)
from spine.storage.api_keys import ApiKeyRow

router = APIRouter()

ReaderDep = Annotated[Principal, Depends(require_scope("keys:read"))]
WriterDep = Annotated[Principal, Depends(require_scope("keys:write"))]


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_revoked: bool = False


@router.post("/v1/keys", status_code=201, openapi_extra=json_body(KeyCreate))
async def create_key(
    request: Request, response: Response, principal: WriterDep, state: StateDep
) -> KeyCreated:
    body = await parse_body(request, KeyCreate, stored=True)
    plaintext, row = await key_admin.create(state.database, principal, body, state.settings)
    # The only time the secret is shown; it must not sit in any cache.
    response.headers["Cache-Control"] = "no-store"
    return KeyCreated(**dict(key_public(row)), key=plaintext)


@router.get("/v1/keys", openapi_extra=query_params(ListQuery))
async def list_keys(request: Request, principal: ReaderDep, state: StateDep) -> KeyList:
    query = parse_query(request, ListQuery)
    rows = await key_admin.list_keys(
        state.database, principal, include_revoked=query.include_revoked
    )
    return KeyList(data=[key_public(row) for row in rows])


@router.get("/v1/keys/{key_id}")
async def get_key(key_id: str, principal: ReaderDep, state: StateDep) -> KeyPublic:
    return key_public(await key_admin.get(state.database, principal, key_id))


@router.patch("/v1/keys/{key_id}", openapi_extra=json_body(KeyUpdate))
async def update_key(
    key_id: str, request: Request, principal: WriterDep, state: StateDep
) -> KeyPublic:
    body = await parse_body(request, KeyUpdate, stored=True)
    return key_public(await key_admin.update(state.database, principal, key_id, body))


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, principal: WriterDep, state: StateDep) -> KeyPublic:
    return key_public(await key_admin.revoke(state.database, principal, key_id))


def key_public(row: ApiKeyRow) -> KeyPublic:
    return KeyPublic(
        id=str(row.id),
        name=row.name,
        prefix=row.display_prefix,
        principal=row.principal,
        tenant=row.tenant,
        scopes=list(row.scopes or ()),
        tier=row.tier,
        created_at=epoch(row.created_at),
        expires_at=_seconds(row.expires_at),
        revoked_at=_seconds(row.revoked_at),
        last_used_at=_seconds(row.last_used_at),
        # null: the [limits] default applies; 0: no limit.
        limits=KeyLimitsPublic(
            rpm=row.rpm,
            tpm=row.tpm,
            daily_budget_usd=_usd(row.daily_budget_usd),
            monthly_budget_usd=_usd(row.monthly_budget_usd),
        ),
    )


def _seconds(moment: datetime | None) -> int | None:
    return None if moment is None else epoch(moment)


def _usd(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")
