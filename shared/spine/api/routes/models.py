"""GET /v1/models and GET /v1/models/{id}: OpenAI's shape plus Spine's extra fields."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter

from spine.api.deps import PrincipalDep, RegistryDep
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import ModelEntry
from spine.schemas.models import ModelList, ModelPricingPublic, ModelProfilePublic, ModelPublic

router = APIRouter()

# models.yaml has no creation dates; a fixed epoch keeps the field an integer as
# OpenAI clients expect.
_CREATED = 0


def model_public(entry: ModelEntry, *, name: str | None = None) -> ModelPublic:
    return ModelPublic(
        id=name or entry.id,
        created=_CREATED,
        owned_by=entry.owned_by or entry.provider.value,
        provider=entry.provider.value,
        context_window=entry.context_window,
        max_output_tokens=entry.max_output_tokens,
        pricing=ModelPricingPublic(
            input=entry.pricing.input,
            output=entry.pricing.output,
            cached_input=entry.pricing.cached_input_or_input,
        ),
        capabilities=[c.value for c in entry.capabilities],
        aliases=list(entry.aliases),
        fallbacks=list(entry.fallbacks),
        description=entry.description,
    )


def _resolved_public(resolved: ResolvedModel) -> ModelPublic:
    model = model_public(resolved.entry)
    if resolved.requested != resolved.entry.id:
        model.id = resolved.requested
        model.resolves_to = resolved.entry.id
    if resolved.profile is not None:
        model.profile = ModelProfilePublic(
            name=resolved.profile, parameters=resolved.profile_params
        )
    return model


def list_public(registry: Registry) -> list[ModelPublic]:
    models = [model_public(entry) for entry in registry.models]
    models += [_resolved_public(registry.resolve(name)) for name in registry.profiles]
    models += [_resolved_public(registry.resolve(name)) for name in registry.parsed.aliases]
    return models


@lru_cache(maxsize=1)
def model_list(registry: Registry) -> ModelList:
    """The list changes only with models.yaml (a reload is a new Registry): built once
    per registry rather than once per request."""
    return ModelList(data=list_public(registry))


@router.get("/v1/models")
async def list_models(registry: RegistryDep, _: PrincipalDep) -> ModelList:
    return model_list(registry)


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, registry: RegistryDep, _: PrincipalDep) -> ModelPublic:
    return _resolved_public(registry.resolve(model_id))
