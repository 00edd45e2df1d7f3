"""One step of a run, executed: its `with` values evaluated over the run's variables,
then the step's work. Steps that call a model do it through `ModelCalls` (each call
its own request id, so a step run again after its instance died is never billed
twice); the others are expressions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from spine.errors import InvalidRequestError
from spine.schemas.openai import Usage
from spine.schemas.pipelines import (
    CapabilityStep,
    ChatStep,
    ConditionStep,
    MapStep,
    PromptStep,
    Step,
    TransformStep,
)
from spine.workflows.expressions import evaluate, truthy


class StepFailedError(InvalidRequestError):
    """A step's own mistake at run time (a map over something that is not a list)."""


@dataclass
class StepResult:
    output: Any
    # The values the step was given (`with`, or a map's items).
    input: Any = None
    usage: Usage = field(default_factory=Usage)


class ModelCalls(Protocol):
    """The model calls a step makes, each under `request_id` (its usage row's key)."""

    async def capability(
        self, name: str, fields: dict[str, Any], model: str | None, request_id: str
    ) -> tuple[Any, Usage]: ...

    async def prompt(
        self, slug: str, label: str, variables: dict[str, Any], model: str | None, request_id: str
    ) -> tuple[str, Usage]: ...

    async def chat(
        self, model: str, system: str | None, template: str, values: dict[str, Any], request_id: str
    ) -> tuple[str, Usage]: ...


async def execute(
    step: Step, variables: Mapping[str, Any], calls: ModelCalls, request_id: str
) -> StepResult:
    if isinstance(step, ConditionStep):
        return StepResult(truthy(evaluate(step.if_, variables)))
    if isinstance(step, TransformStep):
        return StepResult(evaluate(step.expression, variables))
    if isinstance(step, MapStep):
        return await _map(step, variables, calls, request_id)
    values = {name: evaluate(expression, variables) for name, expression in step.with_.items()}
    if isinstance(step, CapabilityStep):
        output, usage = await calls.capability(step.capability, values, step.model, request_id)
    elif isinstance(step, PromptStep):
        output, usage = await calls.prompt(step.prompt, step.label, values, step.model, request_id)
    else:
        assert isinstance(step, ChatStep)
        output, usage = await calls.chat(step.model, step.system, step.prompt, values, request_id)
    return StepResult(output, values, usage)


async def _map(
    step: MapStep, variables: Mapping[str, Any], calls: ModelCalls, request_id: str
) -> StepResult:
    items = evaluate(step.over, variables)
    if not isinstance(items, list):
        raise StepFailedError(
            f"'over' must give a list, it gave {type(items).__name__}.", code="not_a_list"
        )
    gate = asyncio.Semaphore(step.concurrency)

    async def one(index: int, item: Any) -> StepResult:
        async with gate:
            scope = {**variables, step.as_: item}
            return await execute(step.step, scope, calls, f"{request_id}.{index}")

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    return StepResult([r.output for r in results], items, _summed([r.usage for r in results]))


def _summed(usages: list[Usage]) -> Usage:
    return Usage.of(
        sum(u.prompt_tokens for u in usages),
        sum(u.completion_tokens for u in usages),
        cached=sum(u.cached_tokens for u in usages),
    )
