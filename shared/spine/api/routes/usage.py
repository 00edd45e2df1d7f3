"""GET /v1/usage, GET /v1/pricing, GET /v1/pricing/{model}, POST /v1/estimate-cost."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, RegistryDep, StateDep
from spine.api.openapi import json_body, query_params
from spine.api.query import parse_query
from spine.schemas.usage import EstimateCostRequest, UsageQuery
from spine.usage.estimate import estimate_cost
from spine.usage.pricing import price_list, resolved_price_object
from spine.usage.report import read_usage

router = APIRouter()


@router.get("/v1/usage", openapi_extra=query_params(UsageQuery))
async def usage(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    query = parse_query(request, UsageQuery)
    return await read_usage(query, principal)


@router.get("/v1/pricing")
async def pricing(registry: RegistryDep, _: PrincipalDep) -> dict[str, Any]:
    return price_list(registry)


@router.get("/v1/pricing/{model_id:path}")
async def model_pricing(model_id: str, registry: RegistryDep, _: PrincipalDep) -> dict[str, Any]:
    return resolved_price_object(registry.resolve(model_id))


@router.post("/v1/estimate-cost", openapi_extra=json_body(EstimateCostRequest))
async def estimate(
    request: Request, registry: RegistryDep, state: StateDep, _: PrincipalDep
) -> dict[str, Any]:
    body = await parse_body(request, EstimateCostRequest)
    return await estimate_cost(body, registry, state.settings)
