"""POST /v1/reviews (run a multi-model review), GET /v1/reviews and
GET /v1/reviews/{id} (the caller's stored reviews; anyone else's is a 404).

Served by the capabilities function: a review is capability calls (seeded prompts,
checked JSON answers) and scales and fails like them. Each model call is admitted on
its own, on its own model, against the caller's limits and budgets
(spine.reviews.calls)."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request

from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, RegistryDep, StateDep, built_call_context
from spine.api.openapi import PAGE_QUERY, json_body
from spine.api.query import epoch, known_query, page_limit
from spine.pipeline.context import CallContext
from spine.prompts.service import owner_of
from spine.reviews import service
from spine.reviews.calls import ReviewEnv
from spine.schemas.openai import ChatCompletionRequest
from spine.schemas.public import ListPage
from spine.schemas.reviews import ReviewPublic, ReviewRequest, ReviewSummary
from spine.storage.reviews import ReviewRow

router = APIRouter()


@router.post("/v1/reviews", openapi_extra=json_body(ReviewRequest))
async def create_review(
    request: Request, principal: PrincipalDep, state: StateDep, registry: RegistryDep
) -> ReviewPublic:
    owner_of(principal)  # 401 before the body is judged
    body = await parse_body(request, ReviewRequest, stored=True)
    service.check_models(body, registry)

    async def admit(built: ChatCompletionRequest, request_id: str) -> CallContext:
        # Each call admitted on what it sends, to its own model.
        ctx = await built_call_context(request, state, principal, registry, built)
        return replace(ctx, request_id=request_id)

    env = ReviewEnv(state.database, principal, registry, admit, request.state.request_id)
    return await service.run_review(env, body)


@router.get("/v1/reviews", openapi_extra=PAGE_QUERY)
async def list_reviews(
    request: Request, principal: PrincipalDep, state: StateDep
) -> ListPage[ReviewSummary]:
    query = known_query(request, {"limit", "after"})
    rows, has_more = await service.list_reviews(
        state.database, principal, limit=page_limit(query), after=query.get("after")
    )
    return ListPage[ReviewSummary].of([_summary(row) for row in rows], has_more)


@router.get("/v1/reviews/{review_id}")
async def get_review(review_id: str, principal: PrincipalDep, state: StateDep) -> ReviewPublic:
    return await service.get_review(state.database, principal, review_id)


def _summary(row: ReviewRow) -> ReviewSummary:
    return ReviewSummary(
        id=str(row.id),
        created_at=epoch(row.created_at),
        status="failed" if row.status == "failed" else "completed",
        judge_model=row.judge_model,
        rounds=row.rounds,
        weighted_score=row.weighted_score,
        agreement=row.agreement,
    )
