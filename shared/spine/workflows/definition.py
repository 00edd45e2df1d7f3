"""A pipeline definition checked whole, before it is stored: every expression
compiles, every variable an expression reads exists (an input or a step), step ids
are unique, chat templates name only what their step is given, and the steps have an
order (no cycle). What is wrong is a 400 naming the field (`steps[2].with.content`).

The order: a step runs after every step whose output its expressions read (`when`,
`with`, `if`, `over`, `expression`, and the run's `output`). Dependencies are read
from the expressions' syntax trees: the field names an expression evaluates against
the variables themselves (`brief.summary` reads `brief`; inside a projection or a
filter, names refer to the items, not to variables).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any

from spine.errors import InvalidRequestError
from spine.prompts.templates import placeholders
from spine.schemas.pipelines import (
    ChatStep,
    ConditionStep,
    MapStep,
    PipelineDefinition,
    Step,
    TransformStep,
)
from spine.workflows.expressions import compiled


@dataclass(frozen=True)
class CheckedPipeline:
    definition: PipelineDefinition
    # Step ids in an order that runs each after the steps it reads.
    order: tuple[str, ...]
    # Step id -> the step ids it reads.
    needs: dict[str, frozenset[str]]


def check_definition(definition: PipelineDefinition) -> CheckedPipeline:
    names = _names(definition)
    steps = {str(step.id) for step in definition.steps}
    needs: dict[str, frozenset[str]] = {}
    for index, step in enumerate(definition.steps):
        where = f"steps[{index}]"
        read: set[str] = set()
        for field, expression, own in _expressions(step, where):
            read |= _reads(expression, field, names | own) - own
        if step.id in read:
            raise _invalid(f"step '{step.id}' reads its own output", where)
        needs[str(step.id)] = frozenset(read & steps)
    if definition.output is not None:
        _reads(definition.output, "output", names)
    try:
        order = tuple(TopologicalSorter(needs).static_order())
    except CycleError as exc:
        cycle = " -> ".join(str(name) for name in exc.args[1])
        raise _invalid(f"the steps read each other in a cycle: {cycle}", "steps") from exc
    return CheckedPipeline(definition, order, needs)


def _names(definition: PipelineDefinition) -> set[str]:
    """Every variable: the inputs and the step ids, each once."""
    names = set()
    for index, name in enumerate(definition.inputs):
        if name in names:
            raise _invalid(f"the input '{name}' is named twice", f"inputs[{index}]")
        names.add(name)
    for index, step in enumerate(definition.steps):
        where = f"steps[{index}]"
        if step.id is None:
            raise _invalid("every step needs an 'id' (its output's name)", f"{where}.id")
        if step.id in names:
            raise _invalid(f"'{step.id}' is already an input or a step's id", f"{where}.id")
        names.add(step.id)
    return names


def _expressions(
    step: Step, where: str, own: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str, frozenset[str]]]:
    """(field, expression, names of its own) of every expression the step evaluates:
    a map's inner step also reads its item (`as`), which is no variable of the run."""
    if step.when is not None:
        yield f"{where}.when", step.when, own
    if isinstance(step, ConditionStep):
        yield f"{where}.if", step.if_, own
    elif isinstance(step, TransformStep):
        yield f"{where}.expression", step.expression, own
    elif isinstance(step, MapStep):
        yield f"{where}.over", step.over, own
        inner = step.step
        if inner.id is not None or inner.when is not None:
            raise _invalid("a map's inner step has no 'id' or 'when'", f"{where}.step")
        yield from _expressions(inner, f"{where}.step", own | {step.as_})
    else:
        for name, expression in step.with_.items():
            yield f"{where}.with.{name}", expression, own
    if isinstance(step, ChatStep):
        for text, field in ((step.prompt, "prompt"), (step.system or "", "system")):
            missing = [name for name in placeholders(text) if name not in step.with_]
            if missing:
                raise _invalid(
                    f"'{{{{ {missing[0]} }}}}' is not given in the step's 'with'",
                    f"{where}.{field}",
                )


def _reads(expression: str, where: str, names: set[str] | frozenset[str]) -> set[str]:
    """The variables `expression` reads; a 400 naming `where` when it does not compile
    or reads a name that is not in `names`."""
    try:
        tree = compiled(expression).parsed
    except Exception as exc:  # jmespath's ParseError, LexerError, ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _invalid(f"not a valid JMESPath expression ({detail})", where) from exc
    read = set(_root_fields(tree))
    unknown = sorted(read - set(names))
    if unknown:
        raise _invalid(f"'{unknown[0]}' is not an input or a step's id", where)
    return read


# Nodes whose first child is evaluated against the current value and the rest
# against what it yields (projections, filters, pipes, subexpressions).
_LEFT_ONLY = frozenset(
    {
        "subexpression", "index_expression", "projection", "value_projection",
        "filter_projection", "flatten", "pipe", "slice",
    }
)  # fmt: skip


def _root_fields(node: dict[str, Any]) -> Iterator[str]:
    """The field names `node` evaluates against the variables themselves."""
    kind = node.get("type")
    children = node.get("children") or []
    if kind == "field":
        yield str(node["value"])
    elif kind == "expref":
        return  # evaluated against each item of a sort_by / max_by argument
    elif kind in _LEFT_ONLY:
        if children:
            yield from _root_fields(children[0])
    else:  # functions, comparisons, and/or/not, multi-selects, key-value pairs
        for child in children:
            yield from _root_fields(child)


def _invalid(message: str, where: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid pipeline definition at '{where}': {message}.",
        param=f"definition.{where}",
        code="invalid_pipeline",
    )
