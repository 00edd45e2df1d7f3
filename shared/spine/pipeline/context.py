"""What one model call carries through the pipeline, and what it hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from spine.auth.principal import Principal
from spine.ledger.recorder import UsageRecorder
from spine.providers.base import Target
from spine.registry.resolve import Registry, ResolvedModel
from spine.schemas.openai import Usage
from spine.settings import Settings
from spine.storage.db import Database

CacheStatus = Literal["HIT", "MISS"]


@dataclass(frozen=True)
class CallContext:
    """An authenticated, admitted call: who asks, with which configuration, where its
    usage row goes (the recorder settles the rate-limit reservation taken at
    admission), and the requested model as resolved at admission, so a request is
    resolved once."""

    request_id: str
    principal: Principal
    settings: Settings
    registry: Registry
    recorder: UsageRecorder
    # Where the response cache and the deployments' cooldowns are kept.
    database: Database
    # The requested model, resolved when the call was admitted; None: resolve it from
    # the request (a call built by a service, e.g. execute-prompt).
    resolved: ResolvedModel | None = None
    # The stored prompt version this call runs (POST /v1/execute-prompt), recorded
    # in the usage row; None for plain chat calls.
    prompt_version_id: str | None = None

    def resolve(self, model: str) -> ResolvedModel:
        """`model` as resolved at admission when it is the admitted one, else now."""
        if self.resolved is not None and self.resolved.requested == model:
            return self.resolved
        return self.registry.resolve(model)


@dataclass
class CallResult:
    """What the HTTP layer needs besides the body: who answered, at what cost."""

    resolved: ResolvedModel
    target: Target
    cost: Decimal = Decimal(0)
    latency_ms: float = 0.0
    usage: Usage = field(default_factory=Usage)
    # The model the client asked for, when a fallback answered instead.
    fallback_from: str | None = None
    # HIT or MISS when the response cache took part in the request, else None.
    cache: CacheStatus | None = None
    # Request fields left out for the provider that answered (it does not take them).
    dropped_params: tuple[str, ...] = ()
