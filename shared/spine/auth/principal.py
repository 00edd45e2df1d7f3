"""The authenticated caller, whatever credential it used."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class KeyLimits:
    """An API key's overrides of the [limits] defaults: None takes the default, 0
    lifts the limit (see docs/limits.md)."""

    rpm: int | None = None
    tpm: int | None = None
    daily_budget_usd: Decimal | None = None
    monthly_budget_usd: Decimal | None = None


@dataclass(frozen=True)
class Principal:
    subject: str  # user or service id; API keys use their owner, or "key:<id>"
    credential: str  # "api_key" | "jwt" | "anonymous"
    api_key_id: str | None = None
    tenant: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    tier: str = "standard"
    # Known for API keys (read with the key); None: admission reads them itself.
    limits: KeyLimits | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal(subject="anonymous", credential="anonymous")
