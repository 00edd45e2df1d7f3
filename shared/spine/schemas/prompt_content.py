"""A prompt version's content as a value: its template, declared variables, default
model and parameters, and optionally a system prompt and the JSON Schema of its
answer. Shared by the prompts logic (spine.prompts) and its storage
(spine.storage.prompts), so neither has to import the other."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spine.schemas.prompts import VariableSpec


@dataclass(frozen=True)
class Variable:
    """A declared template variable. Without a default a variable is required."""

    name: str
    required: bool = True
    default: str | None = None
    description: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "required": self.required,
            "default": self.default,
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, spec: VariableSpec) -> Variable:
        return cls(spec.name, spec.required, spec.default, spec.description)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Variable:
        return cls(
            name=str(data["name"]),
            required=bool(data.get("required", True)),
            default=data.get("default"),
            description=str(data.get("description") or ""),
        )


@dataclass(frozen=True)
class PromptContent:
    """What a version consists of; two versions with equal content hash the same."""

    template: str
    variables: tuple[Variable, ...]
    model: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    # Sent as a system message before the rendered template.
    system_prompt: str | None = None
    # The JSON Schema the answer must match; None: free text.
    output_schema: Mapping[str, Any] | None = None

    def content_hash(self) -> str:
        hashed: dict[str, Any] = {
            "template": self.template,
            "variables": [v.as_json() for v in self.variables],
            "model": self.model,
            "parameters": dict(self.parameters),
        }
        # Only when set, so versions made before these fields keep their hash.
        if self.system_prompt is not None:
            hashed["system_prompt"] = self.system_prompt
        if self.output_schema is not None:
            hashed["output_schema"] = dict(self.output_schema)
        canonical = json.dumps(
            hashed,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
