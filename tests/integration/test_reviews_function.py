"""POST /v1/reviews, GET /v1/reviews[/{id}] through the capabilities function's real
Lambda handler, real API Gateway events, a real Postgres and the provider SDKs
against wire fakes.

Reviewers run in parallel, so each test gives every reviewer its own provider (gpt-test
on the OpenAI fake, gemini-test on the Gemini fake): each fake's queue of scripted
answers is then consumed in a known order. The judge and the reviser run after the
reviewers, so they may share a fake with one of them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes import Fail, Reply, gemini_api, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

RUBRIC = {
    "criteria": [
        {"name": "correctness", "description": "Does it work?", "weight": 3},
        {"name": "clarity", "weight": 1},
    ]
}
ARTIFACTS = [{"name": "add.py", "content": "def add(a, b):\n    return a - b\n"}]
REVISED = [{"name": "add.py", "content": "def add(a, b):\n    return a + b\n"}]
VERDICT = {
    "summary": "The function subtracts.",
    "strengths": ["Short"],
    "weaknesses": ["Wrong operator"],
    "edge_cases": ["Negative numbers"],
    "recommendations": ["Use + instead of -"],
}


@pytest.fixture
def alice(env: Env) -> str:
    return env.create_key("alice", principal="alice", tenant="acme")


def scores(correctness: float, clarity: float) -> dict[str, Any]:
    return {
        "scores": [
            {"criterion": "correctness", "score": correctness, "rationale": "r"},
            {"criterion": "clarity", "score": clarity, "rationale": "r"},
        ],
        "findings": [f"correctness {correctness}"],
    }


def openai_says(env: Env, *answers: dict[str, Any]) -> None:
    for answer in answers:
        env.fakes.script("openai", Reply(openai_api.chat_completion(json.dumps(answer))))


def gemini_says(env: Env, *answers: dict[str, Any]) -> None:
    for answer in answers:
        env.fakes.script("gemini", Reply(gemini_api.response(json.dumps(answer))))


def review_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "artifacts": ARTIFACTS,
        "rubric": RUBRIC,
        "reviewer_models": ["gpt-test", "gemini-test"],
        "judge_model": "gpt-test",
    }
    return {**body, **changes}


def post_review(gateway: Gateway, key: str, **changes: Any) -> Result:
    return gateway.request("POST", "/v1/reviews", json_body=review_body(**changes), key=key)


def ok(result: Result) -> dict[str, Any]:
    assert result.status == 200, result.body
    data: dict[str, Any] = result.json()
    return data


def expected_figures(
    weights: dict[str, float], reviews: list[dict[str, float]]
) -> tuple[float, float]:
    """The documented statistics, computed here independently of Spine's code."""
    means = {c: sum(r[c] for r in reviews) / len(reviews) for c in weights}
    weighted = sum(weights[c] * means[c] for c in weights) / sum(weights.values())
    deviations = [sum(abs(r[c] - means[c]) for r in reviews) / len(reviews) for c in weights]
    agreement = 1 - (sum(deviations) / len(deviations)) / 5
    return round(weighted, 4), round(agreement, 4)


# --- the happy path ------------------------------------------------------------------


def test_two_reviewers_and_a_judge_give_spines_weighted_score_and_agreement(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given two reviewers that disagree a little, and a judge
    openai_says(env, scores(8, 6), VERDICT)
    gemini_says(env, scores(5, 4))
    # When a review is asked for
    review = ok(post_review(gateway, alice))
    # Then the weighted score and the agreement are computed by Spine from the scores
    weighted, agreement = expected_figures(
        {"correctness": 3, "clarity": 1},
        [{"correctness": 8, "clarity": 6}, {"correctness": 5, "clarity": 4}],
    )
    assert review["weighted_score"] == weighted == 6.125
    assert review["agreement"] == agreement == 0.75
    assert review["status"] == "completed" and review["error"] is None
    # And the judge's merge is the review's verdict
    for field in ("strengths", "weaknesses", "edge_cases", "recommendations"):
        assert review[field] == VERDICT[field]
    [round_one] = review["rounds"]
    assert [r["model"] for r in round_one["reviewers"]] == ["gpt-test", "gemini-test"]
    assert [c["mean_score"] for c in round_one["criteria"]] == [6.5, 5.0]
    assert round_one["criteria"][0]["scores"] == [8, 5]
    assert round_one["judge"]["summary"] == VERDICT["summary"]
    # And the judge was given the rubric, the work and both reviews
    judge_prompt = env.fakes.requests("openai")[-1].json["messages"]
    assert "You merge several independent reviews" in judge_prompt[0]["content"]
    assert "correctness 8" in judge_prompt[-1]["content"]
    assert "correctness 5" in judge_prompt[-1]["content"]
    assert "return a - b" in judge_prompt[-1]["content"]
    # And every call has its own usage row, under the review's request id
    rows = env.usage_rows()
    ids = sorted(str(row["request_id"]) for row in rows)
    base = ids[0].split(".review.")[0]
    assert ids == [
        f"{base}.review.1.judge",
        f"{base}.review.1.reviewer.1",
        f"{base}.review.1.reviewer.2",
    ]
    endpoints = {str(row["request_id"]).rsplit(".", 2)[-2]: row["endpoint"] for row in rows}
    assert endpoints["1"] == "capability.review-judge"
    assert {row["tenant"] for row in rows} == {"acme"}
    assert review["usage"]["calls"] == 3
    assert review["usage"]["prompt_tokens"] == sum(int(str(r["prompt_tokens"])) for r in rows)


def test_the_reviewer_prompt_is_a_seeded_system_prompt(
    env: Env, gateway: Gateway, alice: str
) -> None:
    openai_says(env, scores(8, 6), VERDICT)
    gemini_says(env, scores(5, 4))
    ok(post_review(gateway, alice))
    # Then the reviewer's instructions are a system prompt anyone can read
    prompt = gateway.request("GET", "/v1/prompts/review-reviewer", key=alice)
    assert prompt.status == 200, prompt.body
    assert prompt.json()["is_system"] is True


# --- failures ------------------------------------------------------------------------


def test_a_failing_reviewer_is_recorded_and_the_judge_runs_on_the_other(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given the Gemini reviewer failing
    openai_says(env, scores(8, 6), VERDICT)
    env.fakes.script("gemini", Fail(503))
    # When the review runs
    review = ok(post_review(gateway, alice))
    # Then the failure is in the round, and the figures are the other reviewer's
    failed = review["rounds"][0]["reviewers"][1]
    assert failed["status"] == "error" and failed["error"]["code"] == "upstream_error"
    assert failed["usage"] is None
    assert review["weighted_score"] == 7.5  # (3*8 + 6) / 4
    assert review["agreement"] is None  # one reviewer: nothing to agree on
    judge_prompt = env.fakes.requests("openai")[-1].json["messages"][-1]["content"]
    assert "Reviewer 2" not in judge_prompt
    # And the failed call has its error row
    statuses = {str(r["request_id"]).split(".review.")[1]: r["status"] for r in env.usage_rows()}
    assert statuses["1.reviewer.2"] == "error" and statuses["1.judge"] == "ok"


def test_every_reviewer_failing_is_a_clear_error_and_a_failed_review(
    env: Env, gateway: Gateway, alice: str
) -> None:
    env.fakes.script("openai", Fail(500))
    env.fakes.script("gemini", Fail(503))
    # When the review runs
    result = post_review(gateway, alice)
    # Then it is a 502 naming every reviewer's failure; the judge is never called
    assert result.status == 502, result.body
    error = result.error
    assert error["code"] == "all_reviewers_failed"
    assert "gpt-test" in error["message"] and "gemini-test" in error["message"]
    assert len(env.fakes.requests("openai")) == 1
    # And the failed review is stored for its owner to read
    listed = ok(gateway.request("GET", "/v1/reviews", key=alice))
    [item] = listed["data"]
    assert item["status"] == "failed" and item["id"] in error["message"]
    stored = ok(gateway.request("GET", f"/v1/reviews/{item['id']}", key=alice))
    assert stored["error"]["code"] == "all_reviewers_failed"


def test_a_reviewer_answer_missing_a_criterion_is_repaired(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given the OpenAI reviewer forgetting a criterion, then answering in full
    partial = {"scores": [{"criterion": "correctness", "score": 8}], "findings": []}
    openai_says(env, partial, scores(8, 6), VERDICT)
    gemini_says(env, scores(5, 4))
    review = ok(post_review(gateway, alice))
    # Then the repaired answer counts, with its own usage row
    assert review["rounds"][0]["reviewers"][0]["usage"]["repaired"] is True
    assert review["weighted_score"] == 6.125
    repair = env.fakes.requests("openai")[1].json["messages"][-1]["content"]
    assert "'clarity' has no score" in repair
    assert any(str(r["request_id"]).endswith(".reviewer.1.repair") for r in env.usage_rows())


# --- iterations ----------------------------------------------------------------------


def test_a_second_round_reviews_the_revised_artifact(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given round one, a revision, and round two, the reviser on the Gemini fake
    openai_says(env, scores(3, 6), VERDICT)
    gemini_says(env, scores(2, 4), {"artifacts": REVISED})
    openai_says(env, scores(9, 8), {**VERDICT, "recommendations": ["Add a docstring"]})
    gemini_says(env, scores(9, 8))
    # When a review of two rounds is asked for
    review = ok(post_review(gateway, alice, max_iterations=2, reviser_model="gemini-test"))
    # Then the reviser was given the recommendations and the artifact
    reviser_prompt = json.dumps(env.fakes.requests("gemini")[1].json)
    assert "Use + instead of -" in reviser_prompt and "return a - b" in reviser_prompt
    # And the second round reviewed the revised artifact
    first, second = review["rounds"]
    assert first["revision"]["model"] == "gemini-test"
    assert second["artifacts"] == REVISED
    assert "return a + b" in json.dumps(env.fakes.requests("openai")[2].json)
    assert "return a + b" in json.dumps(env.fakes.requests("gemini")[2].json)
    # And the review's figures and verdict are the last round's
    assert review["weighted_score"] == 8.75 and review["agreement"] == 1.0
    assert review["recommendations"] == ["Add a docstring"]
    assert review["artifacts"] == REVISED
    assert (
        first["weighted_score"]
        == expected_figures(
            {"correctness": 3, "clarity": 1},
            [{"correctness": 3, "clarity": 6}, {"correctness": 2, "clarity": 4}],
        )[0]
    )
    assert review["usage"]["calls"] == 7  # 2 reviewers, judge, reviser; 2, judge


def test_rounds_stop_when_the_judge_recommends_nothing(
    env: Env, gateway: Gateway, alice: str
) -> None:
    openai_says(env, scores(10, 10), {**VERDICT, "recommendations": []})
    gemini_says(env, scores(10, 10))
    review = ok(post_review(gateway, alice, max_iterations=3, reviser_model="gemini-test"))
    assert len(review["rounds"]) == 1 and review["rounds"][0]["revision"] is None


# --- stored reviews ------------------------------------------------------------------


def test_a_stored_review_is_its_owners_only(env: Env, gateway: Gateway, alice: str) -> None:
    openai_says(env, scores(8, 6), VERDICT)
    gemini_says(env, scores(5, 4))
    review = ok(post_review(gateway, alice))
    # When the owner reads it back, it is the review as answered
    assert ok(gateway.request("GET", f"/v1/reviews/{review['id']}", key=alice)) == review
    # And to another principal of the tenant, and to another tenant, it does not exist
    bob = env.create_key("bob", principal="bob", tenant="acme")
    eve = env.create_key("eve", principal="alice", tenant="other")
    for key in (bob, eve):
        result = gateway.request("GET", f"/v1/reviews/{review['id']}", key=key)
        assert result.status == 404, result.body
        assert ok(gateway.request("GET", "/v1/reviews", key=key))["data"] == []
    # And an id that is not a UUID is a 404 too
    assert gateway.request("GET", "/v1/reviews/nope", key=alice).status == 404


def test_reviews_are_listed_newest_first_a_page_at_a_time(
    env: Env, gateway: Gateway, alice: str
) -> None:
    ids = []
    for _ in range(3):
        openai_says(env, scores(8, 6), VERDICT)
        gemini_says(env, scores(5, 4))
        ids.append(ok(post_review(gateway, alice))["id"])
    first = ok(gateway.request("GET", "/v1/reviews", key=alice, query="limit=2"))
    assert [item["id"] for item in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True and first["last_id"] == ids[1]
    assert first["data"][0]["weighted_score"] == 6.125 and first["data"][0]["rounds"] == 1
    rest = ok(gateway.request("GET", "/v1/reviews", key=alice, query=f"limit=2&after={ids[1]}"))
    assert [item["id"] for item in rest["data"]] == [ids[0]] and rest["has_more"] is False
    bad = gateway.request("GET", "/v1/reviews", key=alice, query="after=nope")
    assert bad.status == 400 and bad.error["param"] == "after"


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"artifacts": []}, "artifacts"),
        ({"artifacts": [{"name": "a", "content": "  "}]}, "artifacts[0].content"),
        ({"rubric": {"criteria": [{"name": "c", "weight": 0}]}}, "rubric.criteria[0].weight"),
        ({"rubric": {"criteria": [{"name": "c", "weight": -1}]}}, "rubric.criteria[0].weight"),
        ({"reviewer_models": []}, "reviewer_models"),
        ({"reviewer_models": ["gpt-test", "nope"]}, "reviewer_models[1]"),
        ({"judge_model": "nope"}, "judge_model"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"max_iterations": 6}, "max_iterations"),
        ({"max_iterations": 2}, "reviser_model"),
        ({"max_iterations": 2, "reviser_model": "nope"}, "reviser_model"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_with_nothing_called_or_stored(
    env: Env, gateway: Gateway, alice: str, changes: dict[str, Any], param: str
) -> None:
    result = post_review(gateway, alice, **changes)
    assert result.status == 400, result.body
    assert result.error["param"] == param
    assert env.fakes.requests("openai") == [] and env.fakes.requests("gemini") == []
    assert ok(gateway.request("GET", "/v1/reviews", key=alice))["data"] == []
    assert env.usage_rows() == []
