"""The model calls of a review: a reviewer's, the judge's, the reviser's. Each is a
capability call (`spine.capabilities.run`: the seeded prompt, JSON Schema, the
answer checked with one repair call, then a 502) admitted on its own and run
through the one pipeline, with a request id of its own (the ledger keeps one row
per request id): `<request id>.review.<round>.reviewer.<n>`, `...judge`,
`...reviser` (a repair adds `.repair`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from spine.auth.principal import Principal
from spine.capabilities import run
from spine.capabilities.run import Answered, InvalidAnswer
from spine.capabilities.seeds import Seed
from spine.pipeline.context import CallContext
from spine.registry.resolve import Registry
from spine.reviews import seeds
from spine.schemas.openai import ChatCompletionRequest
from spine.schemas.reviews import (
    Artifact,
    CallUsage,
    Criterion,
    JudgeAnswer,
    ReviewerAnswer,
    RevisionAnswer,
)
from spine.storage.db import Database

# Admits one built call (the caller's limits and budgets, on that call's model) and
# gives its context under `request_id`; the HTTP layer provides it.
Admit = Callable[[ChatCompletionRequest, str], Awaitable[CallContext]]


@dataclass(frozen=True)
class ReviewEnv:
    """What every call of one review shares."""

    database: Database
    principal: Principal
    registry: Registry
    admit: Admit
    request_id: str


@dataclass(frozen=True)
class Called:
    value: Any
    usage: CallUsage


async def call(
    env: ReviewEnv,
    seed: Seed,
    *,
    model: str,
    values: dict[str, str],
    request_id: str,
    check: Callable[[Any], Any],
) -> Called:
    prepared = await run.prepare(
        env.database,
        env.principal,
        env.registry,
        name=seed.slug,
        seed=seed,
        values=values,
        model=model,
    )
    ctx = await env.admit(prepared.request, request_id)
    answered = await run.answer(prepared, ctx, check)
    return Called(answered.value, _usage(request_id, answered))


def _usage(request_id: str, answered: Answered) -> CallUsage:
    usage = answered.usage
    return CallUsage(
        request_id=request_id,
        model=usage.model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost_usd=usage.cost_usd,
        latency_ms=usage.latency_ms,
        repaired=usage.repaired,
    )


# --- the three roles ---------------------------------------------------------------


async def review(
    env: ReviewEnv,
    model: str,
    request_id: str,
    *,
    criteria: Sequence[Criterion],
    artifacts: Sequence[Artifact],
) -> Called:
    return await call(
        env,
        seeds.REVIEWER,
        model=model,
        values={"rubric": rubric_text(criteria), "artifacts": artifacts_text(artifacts)},
        request_id=request_id,
        check=lambda answer: check_scores(criteria, answer),
    )


async def judge(
    env: ReviewEnv,
    model: str,
    request_id: str,
    *,
    criteria: Sequence[Criterion],
    artifacts: Sequence[Artifact],
    reviews: Sequence[tuple[str, ReviewerAnswer]],
) -> Called:
    return await call(
        env,
        seeds.JUDGE,
        model=model,
        values={
            "rubric": rubric_text(criteria),
            "artifacts": artifacts_text(artifacts),
            "reviews": reviews_text(reviews),
        },
        request_id=request_id,
        check=lambda answer: _typed(JudgeAnswer, answer),
    )


async def revise(
    env: ReviewEnv,
    model: str,
    request_id: str,
    *,
    artifacts: Sequence[Artifact],
    recommendations: Sequence[str],
) -> Called:
    return await call(
        env,
        seeds.REVISER,
        model=model,
        values={
            "recommendations": "\n".join(f"- {r}" for r in recommendations),
            "artifacts": artifacts_text(artifacts),
        },
        request_id=request_id,
        check=lambda answer: check_revision(artifacts, answer),
    )


# --- checks (an InvalidAnswer is sent back to the model once) -----------------------


def check_scores(criteria: Sequence[Criterion], answer: ReviewerAnswer) -> ReviewerAnswer:
    """Every criterion of the rubric scored exactly once, and nothing else."""
    names = [c.name for c in criteria]
    given = [s.criterion for s in answer.scores]
    for name in given:
        if name not in names:
            raise InvalidAnswer(f"'{name[:100]}' is not a criterion of the rubric {names}")
        if given.count(name) > 1:
            raise InvalidAnswer(f"criterion '{name}' is scored more than once")
    missing = [name for name in names if name not in given]
    if missing:
        raise InvalidAnswer(f"criterion '{missing[0]}' has no score")
    return answer


def check_revision(artifacts: Sequence[Artifact], answer: RevisionAnswer) -> list[Artifact]:
    """The same artifacts, by name, in the request's order."""
    revised = {a.name: a for a in answer.artifacts}
    expected = [a.name for a in artifacts]
    if sorted(revised) != sorted(expected) or len(answer.artifacts) != len(expected):
        raise InvalidAnswer(
            f"the revised artifacts must be exactly {expected}, each once; got "
            f"{[a.name for a in answer.artifacts][:20]}"
        )
    return [revised[name] for name in expected]


def _typed(shape: type[Any], answer: Any) -> Any:
    assert isinstance(answer, shape)
    return answer


# --- what the prompts are rendered with ----------------------------------------------


def rubric_text(criteria: Sequence[Criterion]) -> str:
    return "\n".join(
        f"- {c.name} (weight {c.weight:g})" + (f": {c.description}" if c.description else "")
        for c in criteria
    )


def artifacts_text(artifacts: Sequence[Artifact]) -> str:
    return "\n\n".join(f"=== {a.name} ===\n{a.content}" for a in artifacts)


def reviews_text(reviews: Sequence[tuple[str, ReviewerAnswer]]) -> str:
    return "\n\n".join(
        f"Reviewer {number} ({model}):\n" + json.dumps(answer.model_dump(), ensure_ascii=False)
        for number, (model, answer) in enumerate(reviews, start=1)
    )
