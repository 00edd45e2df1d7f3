"""Routers whose routes return response models (`spine.schemas.public`).

FastAPI documents each route's return type as its response and serializes the model.
Naming `JSONResponse` here (instead of leaving FastAPI's default placeholder) keeps the
bytes every route sent before these models: FastAPI's default writes JSON with
pydantic's serializer, whose floats differ in form from `json.dumps`'s (`1e-6` for
`1e-06`, `0.000015` for `1.5e-05`); with it, the model is dumped to a JSON-ready dict
and `json.dumps` writes it, what `JSONResponse` of a dict always cost.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse


def public_router() -> APIRouter:
    return APIRouter(default_response_class=JSONResponse)
