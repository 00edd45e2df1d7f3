"""GET /v1/models and GET /v1/models/{id}: OpenAI's shape plus Spine's extra fields."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from spine.api.deps import PrincipalDep, RegistryDep
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import ModelEntry

router = APIRouter()

# models.yaml has no creation dates; a fixed epoch keeps the field an integer as
# OpenAI clients expect.
_CREATED = 0


def model_object(entry: ModelEntry, *, name: str | None = None) -> dict[str, Any]:
    return {
        "id": name or entry.id,
        "object": "model",
        "created": _CREATED,
        "owned_by": entry.owned_by or entry.provider.value,
        "provider": entry.provider.value,
        "context_window": entry.context_window,
        "max_output_tokens": entry.max_output_tokens,
        "pricing": {
            "unit": "USD per 1M tokens",
            "input": entry.pricing.input,
            "output": entry.pricing.output,
            "cached_input": entry.pricing.cached_input_or_input,
        },
        "capabilities": [c.value for c in entry.capabilities],
        "aliases": list(entry.aliases),
        "fallbacks": list(entry.fallbacks),
        "description": entry.description,
    }


def _resolved_object(resolved: ResolvedModel) -> dict[str, Any]:
    body = model_object(resolved.entry)
    if resolved.requested != resolved.entry.id:
        body["id"] = resolved.requested
        body["resolves_to"] = resolved.entry.id
    if resolved.profile is not None:
        body["profile"] = {"name": resolved.profile, "parameters": resolved.profile_params}
    return body


def list_objects(registry: Registry) -> list[dict[str, Any]]:
    objects = [model_object(entry) for entry in registry.models]
    objects += [_resolved_object(registry.resolve(name)) for name in registry.profiles]
    objects += [_resolved_object(registry.resolve(name)) for name in registry.parsed.aliases]
    return objects


@router.get("/v1/models")
async def list_models(registry: RegistryDep, _: PrincipalDep) -> dict[str, Any]:
    return {"object": "list", "data": list_objects(registry)}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, registry: RegistryDep, _: PrincipalDep) -> dict[str, Any]:
    return _resolved_object(registry.resolve(model_id))
