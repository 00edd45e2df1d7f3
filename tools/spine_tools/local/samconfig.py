"""Parameter overrides from a SAM CLI config file (samconfig.toml), so `spine local`
and `sam local start-api --config-file` read the same local parameters.

[default.local_start_api.parameters]
parameter_overrides = ["Environment=development"]   # or "Environment=development A=b"
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Any


def parse_overrides(items: list[str] | str) -> dict[str, str]:
    """`["A=1", "B=x y"]` or `"A=1 B='x y'"` (SAM's two spellings) -> {"A": "1", ...}."""
    tokens = shlex.split(items) if isinstance(items, str) else list(items)
    overrides: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter override {token!r} is not KEY=VALUE")
        overrides[key] = value
    return overrides


def config_overrides(path: Path, command: str, environment: str = "default") -> dict[str, str]:
    """The parameter_overrides of `[<environment>.<command>.parameters]`, falling back
    to `[<environment>.global.parameters]`, as the SAM CLI does."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from exc
    section = data.get(environment, {})
    for table in (command, "global"):
        params = section.get(table, {}).get("parameters", {})
        if "parameter_overrides" in params:
            return parse_overrides(params["parameter_overrides"])
    return {}
