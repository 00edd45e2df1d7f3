"""The admin web app's own routes (`admin` function).

- `GET /v1/me`: who the credential is and which scopes it holds, for any caller, so
  the app shows only the pages the credential may use (the API refuses the rest).
- `GET /v1/admin/worker/models`, `POST /v1/admin/worker/models/{load|unload|reload}`:
  the llama.cpp worker's model lifecycle, admin only, audited.
- `POST /v1/admin/models/check`: validate a pasted models.yaml, admin only.
- `GET /v1/admin/latency`: latency percentiles and error rates by provider and model,
  admin only (the ledger of every principal).
- `GET /v1/admin/deployments`: each model's deployments and their cooldowns, admin only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from spine.admin.models_check import check_models_text
from spine.admin.operations import deployments_report, latency_report, time_range
from spine.admin.worker_lifecycle import LifecycleAction, change, list_models
from spine.api.body import parse_body
from spine.api.deps import AdminDep, PrincipalDep, RegistryDep, StateDep
from spine.api.openapi import json_body, query_params
from spine.api.query import parse_query
from spine.errors import AuthenticationError, NotFoundError
from spine.schemas.admin import (
    DeploymentsReport,
    LatencyReport,
    ModelsCheckProblem,
    ModelsCheckPublic,
    PrincipalPublic,
    WorkerAnswer,
)
from spine.schemas.usage import parse_instant

router = APIRouter()


class LifecycleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)


class ModelsCheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The body limit ([service] max_body_bytes) bounds it first.
    content: str


class RangeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime | None = None
    end: datetime | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _instant(cls, value: object) -> object:
        return parse_instant(value) if isinstance(value, str) else value


@router.get("/v1/me")
async def me(principal: PrincipalDep) -> PrincipalPublic:
    if principal.credential == "anonymous":
        raise AuthenticationError("This function needs a credential.")
    return PrincipalPublic(
        subject=principal.subject,
        credential=principal.credential,
        api_key_id=principal.api_key_id,
        tenant=principal.tenant,
        scopes=sorted(principal.scopes),
        tier=principal.tier,
        admin=principal.has_scope("admin"),
    )


@router.get("/v1/admin/worker/models")
async def worker_models(principal: AdminDep, state: StateDep) -> WorkerAnswer:
    return WorkerAnswer.model_validate(await list_models(state.settings, principal))


@router.post("/v1/admin/worker/models/{action}", openapi_extra=json_body(LifecycleRequest))
async def worker_lifecycle(
    action: str, request: Request, principal: AdminDep, state: StateDep
) -> WorkerAnswer:
    try:
        chosen = LifecycleAction(action)
    except ValueError:
        raise NotFoundError(
            f"Unknown action '{action}': expected load, unload or reload.", param="action"
        ) from None
    body = await parse_body(request, LifecycleRequest)
    return WorkerAnswer.model_validate(await change(state.settings, principal, chosen, body.model))


@router.post("/v1/admin/models/check", openapi_extra=json_body(ModelsCheckRequest))
async def models_check(request: Request, principal: AdminDep) -> ModelsCheckPublic:
    body = await parse_body(request, ModelsCheckRequest)
    result = check_models_text(body.content)
    return ModelsCheckPublic(
        valid=result.valid,
        models=result.models,
        problems=[
            ModelsCheckProblem(line=p.line, field=p.field, message=p.message, text=p.text)
            for p in result.problems
        ],
    )


@router.get("/v1/admin/latency", openapi_extra=query_params(RangeQuery))
async def latency(request: Request, principal: AdminDep, state: StateDep) -> LatencyReport:
    query = parse_query(request, RangeQuery)
    start, end = time_range(query.start, query.end, now=datetime.now(UTC))
    return LatencyReport.model_validate(await latency_report(state.database, start, end))


@router.get("/v1/admin/deployments")
async def deployments(
    principal: AdminDep, registry: RegistryDep, state: StateDep
) -> DeploymentsReport:
    return DeploymentsReport.model_validate(await deployments_report(state.database, registry))
