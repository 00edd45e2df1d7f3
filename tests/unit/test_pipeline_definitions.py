"""Pipeline definitions are checked whole before they are stored: the order is read
from what each step's expressions read, and every mistake is a 400 naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from spine.errors import InvalidRequestError
from spine.schemas.pipelines import PipelineDefinition
from spine.workflows.definition import check_definition


def checked(definition: dict[str, Any]) -> Any:
    return check_definition(PipelineDefinition.model_validate(definition))


TRIAGE: dict[str, Any] = {
    "inputs": ["ticket", "lines"],
    "steps": [
        # Listed out of order on purpose: the order comes from what each step reads.
        {"id": "result", "type": "transform",
         "expression": "{summary: brief.summary, tags: tags, paged: page != `null`}"},
        {"id": "page", "type": "prompt", "prompt": "page-oncall", "when": "urgent",
         "with": {"summary": "brief.summary"}},
        {"id": "urgent", "type": "condition", "if": "contains(brief.summary, 'outage')"},
        {"id": "brief", "type": "capability", "capability": "summarize",
         "with": {"content": "ticket"}},
        {"id": "tags", "type": "map", "over": "lines[?length(@) > `0`]", "concurrency": 2,
         "step": {"type": "chat", "model": "default", "prompt": "Tag {{ item }} ({{ n }})",
                  "with": {"item": "item", "n": "length(lines)"}}},
    ],
    "output": "result",
}  # fmt: skip


def test_the_order_runs_each_step_after_what_it_reads() -> None:
    pipeline = checked(TRIAGE)
    order = list(pipeline.order)
    assert order.index("brief") < order.index("urgent") < order.index("page")
    assert order.index("page") < order.index("result")
    assert order.index("tags") < order.index("result")
    assert pipeline.needs["page"] == {"urgent", "brief"}
    # Inside a filter, names are the items' (`@`), and `item` is the map's own
    assert pipeline.needs["tags"] == frozenset()


def test_a_projections_fields_are_not_variables() -> None:
    pipeline = checked(
        {
            "inputs": ["people"],
            "steps": [{"id": "names", "type": "transform", "expression": "people[*].name"}],
        }
    )
    assert pipeline.needs == {"names": frozenset()}


def _with(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"inputs": ["ticket"], "steps": steps, **extra}


@pytest.mark.parametrize(
    ("definition", "param", "words"),
    [
        (
            _with([{"id": "a", "type": "transform", "expression": "b"},
                   {"id": "b", "type": "transform", "expression": "a"}]),
            "definition.steps",
            "cycle",
        ),
        (
            _with([{"id": "a", "type": "transform", "expression": "nope.x"}]),
            "definition.steps[0].expression",
            "'nope' is not an input",
        ),
        (
            _with([{"id": "a", "type": "transform", "expression": "ticket[?"}]),
            "definition.steps[0].expression",
            "not a valid JMESPath",
        ),
        (
            _with([{"id": "ticket", "type": "transform", "expression": "`1`"}]),
            "definition.steps[0].id",
            "already an input",
        ),
        (
            _with([{"type": "transform", "expression": "`1`"}]),
            "definition.steps[0].id",
            "needs an 'id'",
        ),
        (
            _with([{"id": "a", "type": "transform", "expression": "a"}]),
            "definition.steps[0]",
            "its own output",
        ),
        (
            _with([{"id": "a", "type": "chat", "model": "m", "prompt": "Hi {{ who }}"}]),
            "definition.steps[0].prompt",
            "'{{ who }}' is not given",
        ),
        (
            _with([{"id": "a", "type": "map", "over": "ticket",
                    "step": {"id": "x", "type": "transform", "expression": "item"}}]),
            "definition.steps[0].step",
            "no 'id'",
        ),
        (
            _with([{"id": "a", "type": "transform", "expression": "`1`"}], output="zzz"),
            "definition.output",
            "'zzz' is not an input",
        ),
    ],
)  # fmt: skip
def test_a_mistake_is_a_400_naming_its_field(
    definition: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        checked(definition)
    assert refused.value.param == param
    assert words in refused.value.message
