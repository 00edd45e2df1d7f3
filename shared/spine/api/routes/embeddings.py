"""POST /v1/embeddings (the chat function): through the same pipeline as chat, with
its limits, budgets, fallbacks and one usage row."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from spine.api.answer_headers import call_headers
from spine.api.body import parse_body
from spine.api.deps import CallContextDep
from spine.api.openapi import json_body
from spine.pipeline import run
from spine.pipeline.kinds import EMBEDDINGS
from spine.schemas.embeddings import EmbeddingRequest, EmbeddingResponse

router = APIRouter()


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    openapi_extra=json_body(EmbeddingRequest),
)
async def embeddings(request: Request, ctx: CallContextDep) -> Response:
    body = await parse_body(request, EmbeddingRequest)
    answer, result = await run.answer(EMBEDDINGS, body, ctx)
    return JSONResponse(answer.model_dump(mode="json"), headers=call_headers(result))
