"""Responses of GET /v1/models and GET /v1/models/{id}: OpenAI's model object plus
what models.yaml says about the model."""

from __future__ import annotations

from typing import Any, Literal

from spine.schemas.public import PublicModel, omitted_if_none


class ModelPricingPublic(PublicModel):
    unit: Literal["USD per 1M tokens"] = "USD per 1M tokens"
    input: float
    output: float
    cached_input: float


class ModelProfilePublic(PublicModel):
    name: str
    parameters: dict[str, Any]


class ModelPublic(PublicModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    provider: str
    context_window: int
    max_output_tokens: int | None
    pricing: ModelPricingPublic
    capabilities: list[str]
    aliases: list[str]
    fallbacks: list[str]
    description: str | None
    # Present when `id` is an alias or a profile: the model entry it stands for.
    resolves_to: str | None = omitted_if_none("the model id an alias or profile stands for")
    profile: ModelProfilePublic | None = omitted_if_none("the profile `id` names")


class ModelList(PublicModel):
    object: Literal["list"] = "list"
    data: list[ModelPublic]
