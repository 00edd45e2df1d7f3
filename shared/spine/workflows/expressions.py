"""JMESPath over a run's variables: the one expression language of pipelines."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any


@cache
def compiled(expression: str) -> Any:
    """The parsed expression (jmespath's ParseError or LexerError when it is not one)."""
    import jmespath  # noqa: PLC0415 - only pipeline definitions and runs need it

    return jmespath.compile(expression)


def evaluate(expression: str, variables: Mapping[str, Any]) -> Any:
    return compiled(expression).search(dict(variables))


def truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, and empty strings, lists and objects are false."""
    return value not in (None, False, "", [], {})


def as_text(value: Any) -> str:
    """A value where text is wanted (a template, a capability's content): strings as
    they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
