"""POST /v1/reviews and the stored reviews: the request, the models' answers (JSON
Schema sent as response_format) and the public review object.

Scores are on a 0-10 scale. The weighted score and the agreement are computed by
Spine from the reviewers' scores (spine.reviews.scoring), never taken from a model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spine.schemas.capabilities import MAX_CONTENT_CHARS, ModelName
from spine.schemas.public import PublicModel

MAX_SCORE = 10.0
MAX_ITERATIONS = 5
MAX_REVIEWERS = 5

Name = Annotated[str, Field(min_length=1, max_length=200)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)]

    @field_validator("name", "content")
    @classmethod
    def _filled(cls, value: str) -> str:
        return _not_blank(value)


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: Annotated[str, Field(max_length=2000)] = ""
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0

    @field_validator("name")
    @classmethod
    def _filled(cls, value: str) -> str:
        return _not_blank(value)


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")

    criteria: Annotated[list[Criterion], Field(min_length=1, max_length=20)]

    @field_validator("criteria")
    @classmethod
    def _distinct(cls, value: list[Criterion]) -> list[Criterion]:
        if len({c.name for c in value}) != len(value):
            raise ValueError("criterion names must be distinct")
        return value


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifacts: Annotated[list[Artifact], Field(min_length=1, max_length=10)]
    rubric: Rubric
    reviewer_models: Annotated[list[ModelName], Field(min_length=1, max_length=MAX_REVIEWERS)]
    judge_model: ModelName
    # Rewrites the artifacts from the judge's recommendations between rounds;
    # required when max_iterations > 1 (checked with the models, spine.reviews).
    reviser_model: ModelName | None = None
    max_iterations: Annotated[int, Field(ge=1, le=MAX_ITERATIONS)] = 1

    @field_validator("artifacts")
    @classmethod
    def _distinct_names(cls, value: list[Artifact]) -> list[Artifact]:
        if len({a.name for a in value}) != len(value):
            raise ValueError("artifact names must be distinct")
        return value


# --- what the models answer ------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CriterionScore(_Answer):
    criterion: str
    score: Annotated[float, Field(ge=0, le=MAX_SCORE)]
    rationale: str = ""


class ReviewerAnswer(_Answer):
    scores: Annotated[list[CriterionScore], Field(min_length=1)]
    findings: list[str]


class JudgeAnswer(_Answer):
    summary: str
    strengths: list[str]
    weaknesses: list[str]
    edge_cases: list[str]
    recommendations: list[str]


class RevisionAnswer(_Answer):
    artifacts: Annotated[list[Artifact], Field(min_length=1)]


# --- the review object ----------------------------------------------------------------


class CallUsage(PublicModel):
    """One model call of the review (a repaired answer counts both calls)."""

    request_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    repaired: bool


class CallError(PublicModel):
    code: str | None
    message: str


class ReviewerOutcome(PublicModel):
    model: str
    status: Literal["ok", "error"]
    scores: list[CriterionScore]
    findings: list[str]
    error: CallError | None
    usage: CallUsage | None


class CriterionResult(PublicModel):
    name: str
    weight: float
    # The mean of the reviewers' scores (0-10), and each reviewer's by model.
    mean_score: float
    scores: list[float]


class JudgeOutcome(PublicModel):
    model: str
    summary: str
    strengths: list[str]
    weaknesses: list[str]
    edge_cases: list[str]
    recommendations: list[str]
    usage: CallUsage


class RevisionOutcome(PublicModel):
    model: str
    usage: CallUsage


class ReviewRound(PublicModel):
    number: int
    # The artifacts this round reviewed (the request's, or the last revision's).
    artifacts: list[Artifact]
    reviewers: list[ReviewerOutcome]
    judge: JudgeOutcome | None
    criteria: list[CriterionResult]
    weighted_score: float | None
    agreement: float | None
    # The rewrite made from this round's recommendations, reviewed by the next round.
    revision: RevisionOutcome | None


class ReviewTotals(PublicModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class ReviewPublic(PublicModel):
    id: str
    object: Literal["review"] = "review"
    created_at: int
    status: Literal["completed", "failed"]
    # Why the review failed, when it did.
    error: CallError | None
    rubric: Rubric
    reviewer_models: list[str]
    judge_model: str
    reviser_model: str | None
    max_iterations: int
    # Of the last round that has a judgement.
    weighted_score: float | None
    agreement: float | None
    strengths: list[str]
    weaknesses: list[str]
    edge_cases: list[str]
    recommendations: list[str]
    artifacts: list[Artifact]
    rounds: list[ReviewRound]
    usage: ReviewTotals


class ReviewSummary(PublicModel):
    """A review in GET /v1/reviews (the whole object: GET /v1/reviews/{id})."""

    id: str
    object: Literal["review"] = "review"
    created_at: int
    status: Literal["completed", "failed"]
    judge_model: str
    rounds: int
    weighted_score: float | None
    agreement: float | None
