"""Request and response shapes of the prompt API (the routes in
`spine.api.routes.prompts` map storage rows to the responses).

Requests are strict like the OpenAI shapes: an unknown field is a 400 naming it. Text fields are
stored verbatim (SQL is always parameterized); only identifiers that appear in URLs
(slug, label) and variable names are restricted to a safe alphabet.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from spine.schemas.openai import ChatCompletion
from spine.schemas.public import PublicModel

VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_TEMPLATE_CHARS = 100_000
MAX_VARIABLES = 100
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,127}$"
LABEL_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
# The label every prompt has implicitly: its newest version. It cannot be set.
LATEST_LABEL = "latest"
MAX_VERSION = 2**31 - 1  # the column is a Postgres integer

Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]
VersionNumber = Annotated[int, Field(ge=1, le=MAX_VERSION)]
Template = Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)]
ModelName = Annotated[str, Field(min_length=1, max_length=256)]
# Category and tags: lowercase words, like labels, so they filter exactly.
Category = Annotated[str, Field(pattern=r"^$|" + LABEL_PATTERN)]
Tags = Annotated[list[Label], Field(max_length=20)]
SystemPromptText = Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)]


def _scalar(value: Any) -> Any:
    # Checked before the union so an error names the variable, not a union branch.
    if not isinstance(value, str | int | float | bool):
        raise ValueError("a variable value must be a string, number or boolean")
    return value


VariableValue = Annotated[str | int | float | bool, BeforeValidator(_scalar)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariableSpec(_Strict):
    name: Annotated[str, Field(pattern=VARIABLE_NAME)]
    required: bool = True
    default: Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS)] | None = None
    description: Annotated[str, Field(max_length=2000)] = ""


class _ContentFields(_Strict):
    template: Template
    variables: Annotated[list[VariableSpec], Field(max_length=MAX_VARIABLES)] | None = None
    model: ModelName | None = None
    # Defaults for the chat call of execute-prompt (temperature, max_tokens, ...);
    # checked against the chat request shape when the version is created.
    parameters: dict[str, Any] = Field(default_factory=dict)
    # Sent as a system message before the rendered template.
    system_prompt: SystemPromptText | None = None
    # The JSON Schema (an object) the answer must match; None: free text.
    output_schema: dict[str, Any] | None = None


class PromptCreate(_ContentFields):
    slug: Slug
    name: Annotated[str, Field(min_length=1, max_length=256)] | None = None  # default: slug
    description: Annotated[str, Field(max_length=4000)] = ""
    category: Category = ""
    tags: Tags = Field(default_factory=list)
    # The tenant's prompt rather than the caller's own (a tenant admin's): every
    # principal of the tenant reads and runs it, and a capability uses it in place of
    # the system prompt of its slug.
    shared: StrictBool = False

    @field_validator("slug")
    @classmethod
    def _not_an_id(cls, value: str) -> str:
        return _slug_not_uuid(value)


class PromptUpdate(_Strict):
    """Metadata edits (slug, name, description) never create a version; content
    edits (template, variables, model, parameters) create one when the content
    differs from the newest version. `model: null` clears the default model."""

    slug: Slug | None = None
    name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    description: Annotated[str, Field(max_length=4000)] | None = None
    category: Category | None = None
    tags: Tags | None = None
    template: Template | None = None
    variables: Annotated[list[VariableSpec], Field(max_length=MAX_VARIABLES)] | None = None
    model: ModelName | None = None
    parameters: dict[str, Any] | None = None
    # null clears either.
    system_prompt: SystemPromptText | None = None
    output_schema: dict[str, Any] | None = None

    @field_validator("slug")
    @classmethod
    def _not_an_id(cls, value: str | None) -> str | None:
        return None if value is None else _slug_not_uuid(value)

    @model_validator(mode="after")
    def _something(self) -> PromptUpdate:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        for name in ("slug", "name", "template", "category", "tags"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"'{name}' cannot be null")
        return self

    def changes_content(self) -> bool:
        return bool(CONTENT_FIELDS & self.model_fields_set)


CONTENT_FIELDS = frozenset(
    {"template", "variables", "model", "parameters", "system_prompt", "output_schema"}
)
METADATA_FIELDS = frozenset({"slug", "name", "description", "category", "tags"})


class RollbackRequest(_Strict):
    version: VersionNumber


class LabelRequest(_Strict):
    version: VersionNumber


class _VersionChoice(_Strict):
    """Which version: a number, a label, or (neither) the newest."""

    version: VersionNumber | None = None
    label: Label | None = None

    @model_validator(mode="after")
    def _one(self) -> _VersionChoice:
        if self.version is not None and self.label is not None:
            raise ValueError("send 'version' or 'label', not both")
        return self


class RenderRequest(_VersionChoice):
    variables: Annotated[dict[str, VariableValue], Field(max_length=MAX_VARIABLES)] = Field(
        default_factory=dict
    )


class ExecutePromptRequest(RenderRequest):
    prompt: Annotated[str, Field(min_length=1, max_length=128)]  # id or slug
    model: ModelName | None = None  # default: the version's model
    parameters: dict[str, Any] = Field(default_factory=dict)  # over the version's


def _slug_not_uuid(value: str) -> str:
    # /v1/prompts/{id} takes an id or a slug; a slug shaped like an id would be
    # unreachable by slug.
    try:
        uuid.UUID(value)
    except ValueError:
        return value
    raise ValueError("a slug must not have the form of a prompt id (UUID)")


# --- responses ------------------------------------------------------------------------


class PromptSummary(PublicModel):
    """A prompt in a listing: its metadata, not its content."""

    id: str
    object: Literal["prompt"] = "prompt"
    slug: str
    name: str
    description: str
    latest_version: int
    created_at: int
    updated_at: int
    # A system prompt: every caller reads and runs it, only admins change it.
    is_system: bool
    # The tenant's shared prompt: every principal of the tenant reads and runs it, its
    # admins change it.
    shared: bool
    category: str
    tags: list[str]


class PromptVersionPublic(PublicModel):
    """One immutable version of a prompt's content."""

    id: str
    object: Literal["prompt.version"] = "prompt.version"
    prompt_id: str
    version: int
    template: str
    variables: list[dict[str, Any]]
    model: str | None
    parameters: dict[str, Any]
    system_prompt: str | None
    output_schema: dict[str, Any] | None
    content_hash: str
    rolled_back_from: int | None
    created_by: str
    created_at: int


class PromptPublic(PromptSummary):
    """A prompt with its labels (name to version) and one version's content."""

    labels: dict[str, int]
    version: PromptVersionPublic


class PromptChanged(PromptPublic):
    """After an update or a rollback: whether a new version was made."""

    version_created: bool


class PromptVersionPage(PublicModel):
    """Versions newest first; the ids at both ends are version numbers."""

    object: Literal["list"] = "list"
    data: list[PromptVersionPublic]
    first_id: int | None
    last_id: int | None
    has_more: bool


class PromptLabelSet(PublicModel):
    object: Literal["prompt.label"] = "prompt.label"
    prompt_id: str
    label: str
    version: int
    labels: dict[str, int]


class PromptLabelDeleted(PublicModel):
    object: Literal["prompt.label.deleted"] = "prompt.label.deleted"
    prompt_id: str
    label: str
    deleted: Literal[True] = True


class RenderedMessage(PublicModel):
    role: Literal["system", "user"] = "user"
    content: str


class RenderedPrompt(PublicModel):
    object: Literal["prompt.rendered"] = "prompt.rendered"
    prompt_id: str
    version: int
    version_id: str
    text: str
    messages: list[RenderedMessage]


class ExecutedPromptRef(PublicModel):
    """Which prompt version execute-prompt rendered."""

    id: str
    slug: str
    version: int
    version_id: str


class ExecutedPrompt(ChatCompletion):
    """POST /v1/execute-prompt: the chat completion, and the version it ran."""

    prompt: ExecutedPromptRef
