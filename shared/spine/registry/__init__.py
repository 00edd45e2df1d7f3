"""The model registry: `models.yaml` schema, loader and name resolution."""

from spine.registry.loader import load_registry, parse_registry
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import (
    Capability,
    EngineConfig,
    ModelEntry,
    ModelsFile,
    Pricing,
    Profile,
    ProviderKind,
)

__all__ = [
    "Capability",
    "EngineConfig",
    "ModelEntry",
    "ModelsFile",
    "Pricing",
    "Profile",
    "ProviderKind",
    "Registry",
    "ResolvedModel",
    "load_registry",
    "parse_registry",
]
