"""Check the text of a models.yaml an operator pasted, as the functions would load it.

The same loader (`spine.registry.parse_registry`) that every function runs at start,
so a file this check passes is a file the gateway will serve; its problems come back
as `file:line` records the admin app can point at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spine.errors import ConfigError
from spine.registry import parse_registry

SOURCE = "models.yaml"
_PROBLEM = re.compile(r"^(?P<source>.+?):(?P<line>\d+): (?P<field>.+?): (?P<message>.*)$", re.S)


@dataclass(frozen=True)
class Problem:
    line: int
    field: str
    message: str
    text: str  # `models.yaml:12: models[0].pricing.input: ...`, as `spine models validate`


@dataclass(frozen=True)
class CheckResult:
    valid: bool
    problems: list[Problem]
    models: list[str]


def check_models_text(text: str) -> CheckResult:

    try:
        registry = parse_registry(text, source=SOURCE)
    except ConfigError as exc:
        return CheckResult(valid=False, problems=[_problem(p) for p in exc.problems], models=[])
    return CheckResult(valid=True, problems=[], models=[m.id for m in registry.models])


def _problem(text: str) -> Problem:
    match = _PROBLEM.match(text)
    if match is None:
        return Problem(line=1, field="(file)", message=text, text=text)
    return Problem(
        line=int(match["line"]), field=match["field"], message=match["message"], text=text
    )
