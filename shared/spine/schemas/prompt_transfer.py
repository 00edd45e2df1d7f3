"""The export document of prompts with all their versions and labels: what
`GET /v1/prompts/{id}/export` answers and `POST /v1/prompts/import` takes back.

Strict both ways, so a document edited by hand fails with the field that is wrong."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spine.schemas.prompts import (
    MAX_VARIABLES,
    Category,
    Label,
    ModelName,
    Slug,
    SystemPromptText,
    Tags,
    Template,
    VariableSpec,
    VersionNumber,
)

MAX_EXPORTED_PROMPTS = 100
MAX_EXPORTED_VERSIONS = 500


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportedVersion(_Strict):
    version: VersionNumber
    template: Template
    variables: Annotated[list[VariableSpec], Field(max_length=MAX_VARIABLES)]
    model: ModelName | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    system_prompt: SystemPromptText | None = None
    output_schema: dict[str, Any] | None = None
    rolled_back_from: VersionNumber | None = None


class ExportedPrompt(_Strict):
    slug: Slug
    name: Annotated[str, Field(min_length=1, max_length=256)]
    description: Annotated[str, Field(max_length=4000)] = ""
    category: Category = ""
    tags: Tags = Field(default_factory=list)
    labels: Annotated[dict[Label, VersionNumber], Field(max_length=50)] = Field(
        default_factory=dict
    )
    # Oldest first, numbered 1, 2, 3, ... as they were.
    versions: Annotated[
        list[ExportedVersion], Field(min_length=1, max_length=MAX_EXPORTED_VERSIONS)
    ]

    @model_validator(mode="after")
    def _consistent(self) -> ExportedPrompt:
        numbers = [v.version for v in self.versions]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError("versions must be numbered 1, 2, 3, ... oldest first")
        for label, number in self.labels.items():
            if number > len(numbers):
                raise ValueError(f"label '{label}' points at missing version {number}")
        return self


class PromptExport(_Strict):
    object: Literal["prompt.export"] = "prompt.export"
    prompts: Annotated[list[ExportedPrompt], Field(min_length=1, max_length=MAX_EXPORTED_PROMPTS)]

    @model_validator(mode="after")
    def _unique_slugs(self) -> PromptExport:
        slugs = [p.slug for p in self.prompts]
        if len(set(slugs)) != len(slugs):
            raise ValueError("each slug may appear once")
        return self


class PromptImported(BaseModel):
    object: Literal["prompt.import"] = "prompt.import"
    # The new prompts' ids, in document order.
    ids: list[str]
    slugs: list[str]
