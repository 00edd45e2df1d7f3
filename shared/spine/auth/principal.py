"""The authenticated caller, whatever credential it used."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    subject: str  # user or service id; API keys use their owner, or "key:<id>"
    credential: str  # "api_key" | "jwt" | "anonymous"
    api_key_id: str | None = None
    tenant: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    tier: str = "standard"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal(subject="anonymous", credential="anonymous")
