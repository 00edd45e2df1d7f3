"""Turn the name a client sends (`model` field) into a model entry plus parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spine.errors import ModelNotFoundError
from spine.registry.schema import ModelEntry, ModelsFile, Profile, ProviderKind


@dataclass(frozen=True)
class ResolvedModel:
    requested: str
    entry: ModelEntry
    profile: str | None = None
    # Parameters the profile sets; the request's own values win over these.
    profile_params: dict[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None
    cache_ttl: int = 0
    # Refuse fields the provider does not take rather than drop them.
    strict: bool = False


class Registry:
    """A validated models.yaml with fast lookups. Built only by the loader."""

    def __init__(self, parsed: ModelsFile, *, source: str = "models.yaml") -> None:
        self.parsed = parsed
        self.source = source
        self._by_id = {m.id: m for m in parsed.models}
        self._model_alias = {a: m.id for m in parsed.models for a in m.aliases}

    @property
    def models(self) -> list[ModelEntry]:
        return list(self.parsed.models)

    @property
    def profiles(self) -> dict[str, Profile]:
        return dict(self.parsed.profiles)

    def get(self, model_id: str) -> ModelEntry | None:
        return self._by_id.get(model_id)

    def models_of(self, provider: ProviderKind) -> list[ModelEntry]:
        return [m for m in self.parsed.models if m.provider is provider]

    def resolve(self, name: str) -> ResolvedModel:
        """Id, model alias, top-level alias or profile -> ResolvedModel.

        The loader rejected alias cycles, so the walk through top-level aliases ends.
        """
        target = name
        while target in self.parsed.aliases:
            target = self.parsed.aliases[target]
        profile = self.parsed.profiles.get(target)
        if profile is not None:
            entry = self._entry(profile.model, requested=name)
            return ResolvedModel(
                requested=name,
                entry=entry,
                profile=target,
                profile_params=profile.params(),
                system_prompt=profile.system_prompt,
                cache_ttl=entry.cache_ttl if profile.cache_ttl is None else profile.cache_ttl,
                strict=entry.strict if profile.strict is None else profile.strict,
            )
        entry = self._entry(target, requested=name)
        return ResolvedModel(
            requested=name, entry=entry, cache_ttl=entry.cache_ttl, strict=entry.strict
        )

    def _entry(self, name: str, *, requested: str) -> ModelEntry:
        model_id = self._model_alias.get(name, name)
        entry = self._by_id.get(model_id)
        if entry is None:
            raise ModelNotFoundError(requested)
        return entry
