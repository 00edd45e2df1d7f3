"""The environment variables of emulated functions.

Environment variables belong to the process, not to a thread, so:
- variables every function agrees on (the template's Globals, the Lambda ones that
  do not name the function) are set in the process for as long as the emulator runs;
- variables whose value differs between functions (AWS_LAMBDA_FUNCTION_NAME, a
  per-function override) are set only while that function's module is imported,
  which covers settings read at import; at request time the process value (absent)
  is what handlers see. `spine invoke` runs one function, so there all apply.
- `/opt/...` paths (a layer's mount point) are mapped to the layer's local source,
  so SPINE_CONFIG=/opt/config.toml reads the repository's config.toml.
Precedence, as in `sam local`: process environment < template < --env-vars file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spine_tools.local.intrinsics import LOCAL_REGION
from spine_tools.local.template import FunctionSpec

logger = logging.getLogger("spine_tools.local")


def lambda_variables(spec: FunctionSpec, region: str = LOCAL_REGION) -> dict[str, str]:
    """The variables the Lambda service sets in every container of this function."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "_HANDLER": spec.handler,
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # Set by `sam local` too: Powertools' Tracer turns itself off on seeing it.
        "AWS_SAM_LOCAL": "true",
    }


def read_env_vars_file(path: Path) -> dict[str, dict[str, str]]:
    """A `sam local --env-vars` JSON file: {"Parameters": {..}, "<LogicalId>": {..}}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f'{path}: expected {{"Parameters": {{..}}, "<FunctionId>": {{..}}}}')
    return {
        key: {k: "" if v is None else str(v) for k, v in vars_.items()}
        for key, vars_ in data.items()
    }


def _map_layer_path(value: str, layer_dirs: tuple[Path, ...]) -> str:
    if not value.startswith("/opt/"):
        return value
    relative = value[len("/opt/") :]
    for layer_dir in layer_dirs:
        candidate = layer_dir / relative
        if candidate.exists():
            return str(candidate.resolve())
    return value


def function_environment(
    spec: FunctionSpec, env_vars: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, str]:
    """Everything this function's containers see on top of the process environment."""
    env = lambda_variables(spec)
    env.update({k: _map_layer_path(v, spec.layer_dirs) for k, v in spec.environment.items()})
    overrides = dict((env_vars or {}).get("Parameters", {}))
    overrides.update((env_vars or {}).get(spec.logical_id, {}))
    # As `sam local`: the file overrides variables the template declares, nothing else.
    ignored = sorted(set(overrides) - set(spec.environment))
    if ignored:
        logger.warning(
            "env-vars file sets variables %s that %s does not declare; ignored",
            ignored,
            spec.logical_id,
        )
    env.update({k: v for k, v in overrides.items() if k in spec.environment})
    return env


@dataclass(frozen=True)
class EnvironmentPlan:
    shared: dict[str, str]  # set in the process for the emulator's lifetime
    per_function: dict[str, dict[str, str]]  # set only while importing that function

    @classmethod
    def build(cls, environments: Mapping[str, Mapping[str, str]]) -> EnvironmentPlan:
        values: dict[str, set[str]] = {}
        for env in environments.values():
            for key, value in env.items():
                values.setdefault(key, set()).add(value)
        shared = {key: next(iter(found)) for key, found in values.items() if len(found) == 1}
        per_function = {
            name: {k: v for k, v in env.items() if k not in shared}
            for name, env in environments.items()
        }
        return cls(shared, per_function)

    def conflicting_keys(self) -> list[str]:
        return sorted({k for env in self.per_function.values() for k in env})


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set `values` in os.environ, restoring what was there before on exit."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
