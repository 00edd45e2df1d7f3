"""The figures of a review round, computed by Spine from the reviewers' scores (a
judge's own arithmetic is never trusted).

- **Mean score** of a criterion: the mean of the successful reviewers' scores (0-10).
- **Weighted score**: the rubric-weighted mean of the criteria's mean scores,
  sum(w_c * mean_c) / sum(w_c), on the same 0-10 scale.
- **Agreement**: 1 - the mean, over the criteria, of the reviewers' mean absolute
  deviation from the criterion's mean score, divided by 5 (half the scale: the
  largest deviation possible, half the reviewers at 0 and half at 10). 1.0 when
  every reviewer gave every criterion the same score, 0.0 at the most divided;
  None with fewer than two reviewers (there is nothing to agree on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spine.schemas.reviews import MAX_SCORE, Criterion, ReviewerAnswer

_WORST_DEVIATION = MAX_SCORE / 2


@dataclass(frozen=True)
class CriterionFigures:
    criterion: Criterion
    scores: list[float]  # one per reviewer, in the reviewers' order

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)

    @property
    def deviation(self) -> float:
        """Mean absolute deviation from the mean."""
        mean = self.mean
        return sum(abs(score - mean) for score in self.scores) / len(self.scores)


@dataclass(frozen=True)
class RoundFigures:
    criteria: list[CriterionFigures]
    weighted_score: float
    agreement: float | None


def figures(criteria: Sequence[Criterion], answers: Sequence[ReviewerAnswer]) -> RoundFigures:
    """The figures of `answers` (at least one, each scoring every criterion once:
    `spine.reviews.calls.check_scores`)."""
    per_criterion = [
        CriterionFigures(c, [_score_of(answer, c.name) for answer in answers]) for c in criteria
    ]
    total_weight = sum(c.weight for c in criteria)
    weighted = sum(f.criterion.weight * f.mean for f in per_criterion) / total_weight
    agreement = None
    if len(answers) > 1:
        spread = sum(f.deviation for f in per_criterion) / len(per_criterion)
        agreement = 1 - spread / _WORST_DEVIATION
    return RoundFigures(per_criterion, round(weighted, 4), _rounded(agreement))


def _score_of(answer: ReviewerAnswer, criterion: str) -> float:
    return next(s.score for s in answer.scores if s.criterion == criterion)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
