"""The prompt template language: `{{ name }}` placeholders and nothing else.

Why not Jinja2 or `str.format`: templates are user input, and both of those reach
Python objects (`{0.__class__.__mro__}`, Jinja's sandbox escapes). This language has
no expressions, filters, loops, attribute access or includes: a placeholder is
`{{`, optional spaces, an identifier, optional spaces, `}}`. Any other text,
including a lone `{{` or `}}`, is literal. Rendering is one left-to-right pass, so a
variable's value is never scanned again: a value containing `{{ other }}` stays that
literal text (the way to emit placeholder-shaped text on purpose).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from spine.errors import InvalidRequestError
from spine.schemas.prompt_content import PromptContent, Variable
from spine.schemas.prompts import MAX_TEMPLATE_CHARS, MAX_VARIABLES, VariableSpec

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")

VariableValue = str | int | float | bool


def variables_of(specs: Sequence[VariableSpec] | None) -> list[Variable] | None:
    return None if specs is None else [Variable.from_spec(spec) for spec in specs]


def placeholders(template: str) -> list[str]:
    """The distinct variable names the template uses, in order of first use."""
    seen: dict[str, None] = {}
    for match in PLACEHOLDER.finditer(template):
        seen.setdefault(match.group(1), None)
    return list(seen)


def check_template(template: str) -> None:
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InvalidRequestError(
            f"The template has {len(template)} characters; the limit is {MAX_TEMPLATE_CHARS}.",
            param="template",
            code="template_too_large",
        )
    if not template.strip():
        raise InvalidRequestError("The template is empty.", param="template")


def declare(template: str, declared: Sequence[Variable] | None) -> tuple[Variable, ...]:
    """The variables of `template`: `declared` checked against its placeholders, or,
    when none are declared, one required variable per placeholder."""
    check_template(template)
    used = placeholders(template)
    if declared is None:
        return tuple(Variable(name) for name in used)
    if len(declared) > MAX_VARIABLES:
        raise InvalidRequestError(
            f"At most {MAX_VARIABLES} variables may be declared.", param="variables"
        )
    names = [v.name for v in declared]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise InvalidRequestError(
                f"Variable '{name}' is declared twice.",
                param=f"variables[{index}].name",
                code="duplicate_variable",
            )
    undeclared = [name for name in used if name not in names]
    if undeclared:
        raise InvalidRequestError(
            f"The template uses undeclared variable(s): {', '.join(undeclared)}.",
            param="variables",
            code="undeclared_variable",
        )
    unused = [name for name in names if name not in used]
    if unused:
        raise InvalidRequestError(
            f"Declared variable(s) not used by the template: {', '.join(unused)}.",
            param=f"variables[{names.index(unused[0])}]",
            code="unused_variable",
        )
    return tuple(_normalized(v) for v in declared)


def redeclare(template: str, previous: Sequence[Variable]) -> tuple[Variable, ...]:
    """Variables for a new template when the update declares none: keep the earlier
    declaration of each name still used, add a required variable for each new one."""
    check_template(template)
    by_name = {v.name: v for v in previous}
    return tuple(by_name.get(name, Variable(name)) for name in placeholders(template))


def render(content: PromptContent, values: Mapping[str, VariableValue]) -> str:
    """The template with every placeholder replaced, in one pass.

    A value not declared, or a required variable without a value or default, is a
    400 that names it (`param` is `variables.<name>`).
    """
    declared = {v.name: v for v in content.variables}
    extra = [name for name in values if name not in declared]
    if extra:
        raise InvalidRequestError(
            f"Unknown variable(s) for this prompt version: {', '.join(sorted(extra))}.",
            param=f"variables.{sorted(extra)[0]}",
            code="unknown_variable",
        )
    text_values: dict[str, str] = {}
    missing: list[str] = []
    for variable in content.variables:
        if variable.name in values:
            text_values[variable.name] = _as_text(values[variable.name])
        elif variable.default is not None:
            text_values[variable.name] = variable.default
        elif variable.required:
            missing.append(variable.name)
        else:
            text_values[variable.name] = ""
    if missing:
        raise InvalidRequestError(
            f"Missing value(s) for required variable(s): {', '.join(missing)}.",
            param=f"variables.{missing[0]}",
            code="missing_variable",
        )
    return PLACEHOLDER.sub(lambda m: text_values[m.group(1)], content.template)


def _normalized(variable: Variable) -> Variable:
    # A variable with a default can never be missing; say so in the stored shape.
    if variable.default is not None and variable.required:
        return Variable(variable.name, False, variable.default, variable.description)
    return variable


def _as_text(value: VariableValue) -> str:
    if isinstance(value, str):
        return value
    # JSON spelling for the rest: true/false, 3, 2.5.
    return json.dumps(value)
