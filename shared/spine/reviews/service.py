"""One review: rounds of reviewers (in parallel, a few at once), the judge, and,
while rounds remain, the reviser; stored at the end, completed or failed.

A reviewer that fails (an upstream error, an answer still invalid after its repair)
is recorded in its round and the judge runs on the others; every reviewer failing
fails the review (502 `all_reviewers_failed`). The judge or the reviser failing
fails it with their error. A failed review is stored too, with the rounds it had,
so `GET /v1/reviews/{id}` shows what happened.

Time: a review runs within one Lambda invocation, so it has a budget
(`TIME_LIMIT_S`, under the capabilities function's 300-second timeout; the function
streams through Lambda Web Adapter, so API Gateway's 29-second buffered limit does
not apply); each
call gets what is left of it (a reviewer out of time is a failed reviewer, the judge
or reviser out of time fails the review), and a round does not start without
`ROUND_RESERVE_S` left. Each call is also bounded by its model's timeouts
(models.yaml).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from spine.errors import (
    InvalidRequestError,
    NotFoundError,
    SpineError,
    UpstreamError,
    UpstreamTimeoutError,
)
from spine.prompts.service import owner_of
from spine.registry.resolve import Registry
from spine.reviews import calls, scoring
from spine.reviews.calls import Called, ReviewEnv
from spine.schemas.reviews import (
    Artifact,
    CallError,
    CriterionResult,
    JudgeAnswer,
    JudgeOutcome,
    ReviewerAnswer,
    ReviewerOutcome,
    ReviewPublic,
    ReviewRequest,
    ReviewRound,
    ReviewTotals,
    RevisionOutcome,
)
from spine.storage import reviews as store
from spine.storage.db import Database
from spine.storage.owner import Owner
from spine.storage.reviews import NewReview, ReviewRow

# Reviewer calls of one round running at once.
REVIEWERS_AT_ONCE = 3
TIME_LIMIT_S = 270.0
# A new round (reviewers, then the judge) does not start with less left than this.
ROUND_RESERVE_S = 8.0

T = TypeVar("T")


def check_models(body: ReviewRequest, registry: Registry) -> None:
    """400 naming the field for an unknown model or a missing reviser, before any
    call or write."""
    named = [(f"reviewer_models[{i}]", m) for i, m in enumerate(body.reviewer_models)]
    named.append(("judge_model", body.judge_model))
    if body.max_iterations > 1 and body.reviser_model is None:
        raise InvalidRequestError(
            "'reviser_model' is required when 'max_iterations' is more than 1: it "
            "rewrites the artifacts between rounds.",
            param="reviser_model",
            code="missing_required_parameter",
        )
    if body.reviser_model is not None:
        named.append(("reviser_model", body.reviser_model))
    for param, model in named:
        try:
            registry.resolve(model)
        except SpineError:
            raise InvalidRequestError(
                f"Invalid value for '{param}': unknown model '{model[:100]}'.",
                param=param,
                code="model_not_found",
            ) from None


@dataclass
class _Review:
    """A review as it runs."""

    id: uuid.UUID
    body: ReviewRequest
    created_at: datetime
    rounds: list[ReviewRound]
    usages: list[Any]
    error: SpineError | None = None


async def run_review(env: ReviewEnv, body: ReviewRequest) -> ReviewPublic:
    """Run and store the review; a failed one is stored, then its error raised."""
    owner = owner_of(env.principal)
    review = _Review(uuid.uuid4(), body, datetime.now(UTC), [], [])
    deadline = time.monotonic() + TIME_LIMIT_S
    try:
        await _rounds(env, review, deadline)
    except SpineError as exc:
        review.error = exc
    public = _public(review)
    await _store(env, owner, review, public)
    if review.error is not None:
        error = review.error
        error.message = f"{error.message} (review {review.id} is stored as failed)"
        raise error
    return public


async def _rounds(env: ReviewEnv, review: _Review, deadline: float) -> None:
    body = review.body
    criteria = body.rubric.criteria
    artifacts = body.artifacts
    for number in range(1, body.max_iterations + 1):
        if number > 1 and deadline - time.monotonic() < ROUND_RESERVE_S:
            break  # the rounds done stand; the review says how many ran
        prefix = f"{env.request_id}.review.{number}"
        outcomes = await _reviewers(env, body, prefix, artifacts, deadline)
        answered = [(o.model, _answer(o)) for o in outcomes if o.status == "ok"]
        this = ReviewRound(
            number=number,
            artifacts=list(artifacts),
            reviewers=outcomes,
            judge=None,
            criteria=[],
            weighted_score=None,
            agreement=None,
            revision=None,
        )
        review.rounds.append(this)
        review.usages += [o.usage for o in outcomes if o.usage is not None]
        if not answered:
            raise UpstreamError(
                "Every reviewer failed: "
                + "; ".join(f"{o.model}: {o.error.message if o.error else ''}" for o in outcomes),
                code="all_reviewers_failed",
            )
        figures = scoring.figures(criteria, [answer for _, answer in answered])
        this.criteria = [
            CriterionResult(
                name=f.criterion.name,
                weight=f.criterion.weight,
                mean_score=round(f.mean, 4),
                scores=f.scores,
            )
            for f in figures.criteria
        ]
        this.weighted_score = figures.weighted_score
        this.agreement = figures.agreement
        judged = await _bounded(
            calls.judge(
                env,
                body.judge_model,
                f"{prefix}.judge",
                criteria=criteria,
                artifacts=artifacts,
                reviews=answered,
            ),
            deadline,
        )
        review.usages.append(judged.usage)
        this.judge = _judge_outcome(body.judge_model, judged)
        recommendations = this.judge.recommendations
        if number == body.max_iterations or not recommendations:
            break  # nothing left to revise
        assert body.reviser_model is not None  # check_models
        revised = await _bounded(
            calls.revise(
                env,
                body.reviser_model,
                f"{prefix}.reviser",
                artifacts=artifacts,
                recommendations=recommendations,
            ),
            deadline,
        )
        review.usages.append(revised.usage)
        this.revision = RevisionOutcome(model=body.reviser_model, usage=revised.usage)
        artifacts = revised.value


async def _reviewers(
    env: ReviewEnv, body: ReviewRequest, prefix: str, artifacts: list[Artifact], deadline: float
) -> list[ReviewerOutcome]:
    """Every reviewer's outcome, in the request's order; a failure is an outcome."""
    gate = asyncio.Semaphore(REVIEWERS_AT_ONCE)
    criteria = body.rubric.criteria

    async def one(number: int, model: str) -> ReviewerOutcome:
        request_id = f"{prefix}.reviewer.{number}"
        async with gate:
            try:
                called = await _bounded(
                    calls.review(env, model, request_id, criteria=criteria, artifacts=artifacts),
                    deadline,
                )
            except SpineError as exc:
                return ReviewerOutcome(
                    model=model,
                    status="error",
                    scores=[],
                    findings=[],
                    error=CallError(code=exc.code, message=exc.message),
                    usage=None,
                )
        answer: ReviewerAnswer = called.value
        return ReviewerOutcome(
            model=model,
            status="ok",
            scores=answer.scores,
            findings=answer.findings,
            error=None,
            usage=called.usage,
        )

    models = enumerate(body.reviewer_models, start=1)
    return list(await asyncio.gather(*(one(number, model) for number, model in models)))


async def _bounded(call: Awaitable[T], deadline: float) -> T:
    """`call` within what is left of the review's time."""
    try:
        return await asyncio.wait_for(call, timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise UpstreamTimeoutError(
            f"The review ran out of its {TIME_LIMIT_S:g} seconds.", code="review_time_limit"
        ) from None


def _answer(outcome: ReviewerOutcome) -> ReviewerAnswer:
    return ReviewerAnswer(scores=outcome.scores, findings=outcome.findings)


def _judge_outcome(model: str, judged: Called) -> JudgeOutcome:
    answer: JudgeAnswer = judged.value
    return JudgeOutcome(
        model=model,
        summary=answer.summary,
        strengths=answer.strengths,
        weaknesses=answer.weaknesses,
        edge_cases=answer.edge_cases,
        recommendations=answer.recommendations,
        usage=judged.usage,
    )


# --- the review object, stored and read ------------------------------------------------


def _public(review: _Review) -> ReviewPublic:
    body = review.body
    judged = [r for r in review.rounds if r.judge is not None]
    last = judged[-1] if judged else None
    verdict = last.judge if last is not None else None
    error = review.error
    return ReviewPublic(
        id=str(review.id),
        created_at=int(review.created_at.timestamp()),
        status="failed" if error is not None else "completed",
        error=None if error is None else CallError(code=error.code, message=error.message),
        rubric=body.rubric,
        reviewer_models=body.reviewer_models,
        judge_model=body.judge_model,
        reviser_model=body.reviser_model,
        max_iterations=body.max_iterations,
        weighted_score=None if last is None else last.weighted_score,
        agreement=None if last is None else last.agreement,
        strengths=[] if verdict is None else verdict.strengths,
        weaknesses=[] if verdict is None else verdict.weaknesses,
        edge_cases=[] if verdict is None else verdict.edge_cases,
        recommendations=[] if verdict is None else verdict.recommendations,
        artifacts=review.rounds[-1].artifacts if review.rounds else body.artifacts,
        rounds=review.rounds,
        usage=ReviewTotals(
            calls=len(review.usages),
            prompt_tokens=sum(u.prompt_tokens for u in review.usages),
            completion_tokens=sum(u.completion_tokens for u in review.usages),
            cost_usd=round(sum(u.cost_usd for u in review.usages), 9),
        ),
    )


async def _store(env: ReviewEnv, owner: Owner, review: _Review, public: ReviewPublic) -> None:
    conn = await env.database.connection()
    await store.insert_review(
        conn,
        owner,
        NewReview(
            id=review.id,
            request_id=env.request_id,
            status=public.status,
            judge_model=public.judge_model,
            rounds=len(public.rounds),
            weighted_score=public.weighted_score,
            agreement=public.agreement,
            review=public.model_dump(mode="json"),
            created_at=review.created_at,
        ),
    )


def _review_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


async def get_review(database: Database, principal: Any, review_id: str) -> ReviewPublic:
    """The caller's review; 404 when it is not the caller's (or does not exist)."""
    owner = owner_of(principal)
    parsed = _review_id(review_id)
    stored = None
    if parsed is not None:
        stored = await store.get_review(await database.connection(), owner, parsed)
    if stored is None:
        raise NotFoundError(f"No review with id '{review_id[:64]}'.", param="review_id")
    return ReviewPublic.model_validate(stored)


async def list_reviews(
    database: Database, principal: Any, *, limit: int, after: str | None
) -> tuple[list[ReviewRow], bool]:
    owner = owner_of(principal)
    cursor = None
    if after is not None:
        cursor = _review_id(after)
        if cursor is None:
            raise InvalidRequestError(
                f"'after' must be a review id, got '{after[:64]}'.", param="after"
            )
    return await store.list_reviews(await database.connection(), owner, limit=limit, after=cursor)
