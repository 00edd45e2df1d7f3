"""The system prompts of a review, seeded into the prompt registry on first use like
the capabilities' (spine.capabilities.prompts): an admin may edit them, a caller
may override one with an own prompt of the same slug."""

from __future__ import annotations

from spine.capabilities.seeds import Seed
from spine.schemas.reviews import JudgeAnswer, ReviewerAnswer, RevisionAnswer

REVIEWER = Seed(
    slug="review-reviewer",
    name="Review: reviewer",
    system_prompt=(
        "You review work against a rubric, independently and critically. Score every "
        "criterion of the rubric from 0 (absent or wrong) to 10 (excellent), with a "
        "one-sentence rationale, and list your findings: concrete problems, risks and "
        "notable qualities. Answer with a JSON object: 'scores', a list of objects "
        "with 'criterion' (exactly a rubric criterion's name), 'score' and "
        "'rationale', one per criterion; and 'findings', a list of short sentences."
    ),
    template="Rubric:\n{{ rubric }}\n\nWork to review:\n{{ artifacts }}",
    answer=ReviewerAnswer,
)

JUDGE = Seed(
    slug="review-judge",
    name="Review: judge",
    system_prompt=(
        "You merge several independent reviews of the same work into one judgement. "
        "Keep what the reviewers support, resolve their disagreements on the "
        "evidence in the work, and drop duplicates. Answer with a JSON object: "
        "'summary' (two or three sentences), 'strengths', 'weaknesses', 'edge_cases' "
        "(inputs or situations the work may not handle) and 'recommendations' "
        "(concrete changes, most important first), each a list of short sentences."
    ),
    template=(
        "Rubric:\n{{ rubric }}\n\nWork reviewed:\n{{ artifacts }}\n\nReviews:\n{{ reviews }}"
    ),
    answer=JudgeAnswer,
)

REVISER = Seed(
    slug="review-reviser",
    name="Review: reviser",
    system_prompt=(
        "You revise work by applying review recommendations, changing nothing else. "
        "Answer with a JSON object: 'artifacts', a list of objects with 'name' "
        "(each artifact's name, unchanged) and 'content' (its whole revised content)."
    ),
    template="Recommendations:\n{{ recommendations }}\n\nWork to revise:\n{{ artifacts }}",
    answer=RevisionAnswer,
)
