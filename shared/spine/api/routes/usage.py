"""GET /v1/usage, GET /v1/pricing, GET /v1/pricing/{model}, POST /v1/estimate-cost."""

from __future__ import annotations

from functools import lru_cache

import pydantic_core
from fastapi import APIRouter, Request, Response

from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, RegistryDep, StateDep
from spine.api.openapi import json_body, query_params
from spine.api.query import parse_query
from spine.registry.resolve import Registry
from spine.schemas.usage import (
    CostEstimate,
    EstimateCostRequest,
    PriceList,
    PricePublic,
    UsageQuery,
    UsageReportPublic,
)
from spine.usage.estimate import estimate_cost
from spine.usage.pricing import price_list, resolved_price_object
from spine.usage.report import read_usage

router = APIRouter()

# `spine.usage` builds these answers as JSON-ready dicts; each is checked against its
# public model here (extra="forbid": a key added there and not to the model fails).


@router.get("/v1/usage", response_model=UsageReportPublic, openapi_extra=query_params(UsageQuery))
async def usage(request: Request, principal: PrincipalDep, state: StateDep) -> Response:
    query = parse_query(request, UsageQuery)
    report = UsageReportPublic.of(await read_usage(state.database, query, principal))
    # Not returned as the model, so that its breakdowns keep the order `group_by`
    # asked for; written by pydantic's serializer as FastAPI writes a model.
    return Response(pydantic_core.to_json(report.content()), media_type="application/json")


@lru_cache(maxsize=1)
def _price_list(registry: Registry) -> PriceList:
    # Prices change only with models.yaml (a reload is a new Registry).
    return PriceList.model_validate(price_list(registry))


@router.get("/v1/pricing")
async def pricing(registry: RegistryDep, _: PrincipalDep) -> PriceList:
    return _price_list(registry)


@router.get("/v1/pricing/{model_id:path}")
async def model_pricing(model_id: str, registry: RegistryDep, _: PrincipalDep) -> PricePublic:
    return PricePublic.model_validate(resolved_price_object(registry.resolve(model_id)))


@router.post("/v1/estimate-cost", openapi_extra=json_body(EstimateCostRequest))
async def estimate(
    request: Request, registry: RegistryDep, state: StateDep, _: PrincipalDep
) -> CostEstimate:
    body = await parse_body(request, EstimateCostRequest)
    return CostEstimate.model_validate(await estimate_cost(body, registry, state.settings))
