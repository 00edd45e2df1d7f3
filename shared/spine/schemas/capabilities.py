"""Request and response shapes of the capability routes (summarize, extract,
classify, rewrite, infer-title, generate-commit, translate), as GenAI Spine had
them so its clients keep working, and the shapes of the models' answers.

Requests are strict: an unknown field, an unknown mode or an empty content is a 400
naming the field."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spine.schemas.public import PublicModel

# Far below any context window, above what these tasks are used for; the body-size
# limit of the service (413) may come first.
MAX_CONTENT_CHARS = 50_000
DEFAULT_ENTITY_TYPES = ("PERSON", "ORG", "LOCATION", "DATE", "MONEY")

ModelName = Annotated[str, Field(min_length=1, max_length=256)]
ShortText = Annotated[str, Field(min_length=1, max_length=2000)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)]
    # A model id, alias or profile; the capability's default otherwise.
    model: ModelName | None = None

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, value: str) -> str:
        return _not_blank(value)


class _TextRequest(_Request):
    # Server-sent events of the text as it is generated, then the checked result
    # (spine.capabilities.stream); the text capabilities only.
    stream: bool = False


class SummarizeRequest(_TextRequest):
    max_sentences: Annotated[int, Field(ge=1, le=10)] = 3
    focus: ShortText | None = None
    output_format: Literal["paragraph", "bullet_points"] = "paragraph"


EntityType = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")]


class ExtractRequest(_Request):
    entity_types: Annotated[list[EntityType], Field(min_length=1, max_length=20)] = Field(
        default_factory=lambda: list(DEFAULT_ENTITY_TYPES)
    )
    include_context: bool = False


Category = Annotated[str, Field(min_length=1, max_length=100)]


class ClassifyRequest(_Request):
    categories: Annotated[list[Category], Field(min_length=2, max_length=50)]
    multi_label: bool = False
    include_confidence: bool = True

    @field_validator("categories")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        for category in value:
            _not_blank(category)
        if len(set(value)) != len(value):
            raise ValueError("categories must be distinct")
        return value


class RewriteMode(StrEnum):
    CLEAN = "clean"
    FORMAT = "format"
    ORGANIZE = "organize"
    PROFESSIONAL = "professional"
    CASUAL = "casual"
    SUMMARIZE = "summarize"
    TECHNICAL = "technical"


class RewriteRequest(_TextRequest):
    mode: RewriteMode
    context: ShortText | None = None
    preserve_code_blocks: bool = True


class InferTitleRequest(_Request):
    max_words: Annotated[int, Field(ge=3, le=20)] = 10


class TranslateRequest(_TextRequest):
    target_language: Annotated[str, Field(min_length=2, max_length=64)]
    source_language: Annotated[str, Field(min_length=2, max_length=64)] | None = None
    preserve_formatting: bool = True


class ChangedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Annotated[str, Field(min_length=1, max_length=1024)]
    status: Literal["added", "modified", "deleted", "renamed"]
    diff: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)] = ""


class GenerateCommitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: Annotated[list[ChangedFile], Field(min_length=1, max_length=200)]
    chat_context: Annotated[list[ShortText], Field(max_length=50)] = Field(default_factory=list)
    style: Literal["conventional", "semantic", "simple"] = "conventional"
    include_scope: bool = True
    max_length: Annotated[int, Field(ge=100, le=2000)] = 500
    model: ModelName | None = None


# --- responses ------------------------------------------------------------------------


class CapabilityUsage(PublicModel):
    """What the call cost: every model call it made (a repaired answer is two)."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    latency_ms: float
    # The prompt that gave the instructions: its slug and version, and whether it is
    # the system prompt or the caller's own.
    prompt: str
    prompt_version: int
    prompt_is_system: bool
    repaired: bool


class SummarizeResponse(PublicModel):
    summary: str
    key_points: list[str]
    word_count: int
    compression_ratio: float
    usage: CapabilityUsage


class Entity(PublicModel):
    text: str
    type: str
    start: int
    end: int
    confidence: float
    context: str | None


class DroppedEntity(PublicModel):
    text: str
    type: str
    reason: str


class ExtractResponse(PublicModel):
    entities: list[Entity]
    entity_count: int
    # What the model named that is not in the content (or not of a requested type).
    dropped_entities: list[DroppedEntity]
    usage: CapabilityUsage


class Classification(PublicModel):
    category: str
    confidence: float | None


class ClassifyResponse(PublicModel):
    classifications: list[Classification]
    primary_category: str
    usage: CapabilityUsage


class RewriteResponse(PublicModel):
    original: str
    rewritten: str
    mode: str
    code_blocks_preserved: int
    usage: CapabilityUsage


class InferTitleResponse(PublicModel):
    title: str
    usage: CapabilityUsage


class FeatureGroup(PublicModel):
    scope: str
    description: str
    files: list[str]


class GenerateCommitResponse(PublicModel):
    commit_message: str
    feature_groups: list[FeatureGroup]
    suggested_tags: list[str]
    files_analyzed: int
    usage: CapabilityUsage


class TranslateResponse(PublicModel):
    translated_text: str
    source_language: str | None
    target_language: str
    usage: CapabilityUsage


# --- what the models answer (JSON Schema sent as response_format) ---------------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SummaryAnswer(_Answer):
    summary: Annotated[str, Field(min_length=1)]
    key_points: list[str]


class EntityAnswer(_Answer):
    text: Annotated[str, Field(min_length=1)]
    type: str
    confidence: Annotated[float, Field(ge=0, le=1)]


class EntitiesAnswer(_Answer):
    entities: list[EntityAnswer]


class ClassificationAnswer(_Answer):
    category: str
    confidence: Annotated[float, Field(ge=0, le=1)]


class ClassificationsAnswer(_Answer):
    classifications: Annotated[list[ClassificationAnswer], Field(min_length=1)]


class TitleAnswer(_Answer):
    title: Annotated[str, Field(min_length=1)]


class FeatureGroupAnswer(_Answer):
    scope: str
    description: str
    files: list[str]


class CommitAnswer(_Answer):
    commit_message: Annotated[str, Field(min_length=1)]
    feature_groups: list[FeatureGroupAnswer]
    suggested_tags: list[str]
