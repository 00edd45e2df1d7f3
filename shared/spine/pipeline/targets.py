"""Where a resolved model's call goes: base URL, provider model name and API key."""

from __future__ import annotations

import os
from urllib.parse import quote

from spine.auth.principal import Principal
from spine.aws.secrets import DEFAULT_MAX_AGE_SECONDS, get_secret
from spine.errors import SpineError
from spine.providers.base import Target
from spine.registry.schema import ApiKeySource, ModelEntry, ProviderKind
from spine.settings import Settings


class ProviderNotConfiguredError(SpineError):
    """The operator has not given Spine what it needs to call this model. A server
    error no retry can fix: `x-should-retry: false` tells OpenAI's SDKs not to retry
    it (they retry every other 5xx)."""

    status_code = 500
    error_type = "server_error"
    default_code = "provider_not_configured"

    def __init__(self, message: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.headers.setdefault("x-should-retry", "false")


def resolve_api_key(
    entry: ModelEntry, source: ApiKeySource | None, *, max_age: int = DEFAULT_MAX_AGE_SECONDS
) -> str | None:
    if source is None:
        return None
    if source.env is not None:
        value = os.environ.get(source.env)
        if not value:
            raise ProviderNotConfiguredError(
                f"Model '{entry.id}' is not configured: the environment variable "
                f"{source.env} holding its API key is not set."
            )
        return value
    assert source.secret is not None
    return get_secret(source.secret, key=source.secret_key, max_age=max_age)


def target_for(entry: ModelEntry, settings: Settings, caller: Principal | None = None) -> Target:
    """Where to send a call for `entry`. The router (`spine.pipeline.routing`) hands
    over a model served by one deployment (`ModelEntry.served_by`), so the first
    deployment, if any, is the one. A call to the llama.cpp worker names its
    `caller`, so the worker's per-user fairness and tier priorities apply to it."""
    deployment = entry.deployments[0] if entry.deployments else None
    base_url = (deployment.base_url if deployment else None) or entry.base_url
    key_source = (deployment.api_key if deployment else None) or entry.api_key
    api_key = resolve_api_key(entry, key_source, max_age=settings.secrets.max_age_seconds)
    headers: dict[str, str] = {}
    if entry.provider is ProviderKind.LLAMACPP:
        # The worker speaks OpenAI's API; its bearer token is Spine's, not a provider key.
        base_url = base_url or settings.worker.url.rstrip("/") + "/v1"
        api_key = api_key or worker_token(settings) or "no-token"
        if caller is not None:
            headers = worker_headers(caller)
    return Target(
        entry=entry,
        provider=entry.provider,
        model=(deployment.model if deployment and deployment.model else entry.model),
        base_url=base_url,
        api_key=api_key,
        timeouts=entry.timeouts,
        deployment=deployment.name if deployment else "default",
        headers=headers,
    )


def worker_headers(caller: Principal) -> dict[str, str]:
    """The worker's fairness headers (docs/worker.md): the user, per tenant, and the
    tier its priority class comes from."""
    user = f"{caller.tenant}/{caller.subject}" if caller.tenant else caller.subject
    # Percent-encoded: header values are latin-1, subjects and tenants need not be.
    return {"x-user-id": quote(user, safe="/:@._-+"), "x-key-tier": quote(caller.tier)}


def worker_token(settings: Settings) -> str | None:
    if settings.worker_token:
        return settings.worker_token
    if settings.worker.token_secret:
        return get_secret(settings.worker.token_secret, max_age=settings.secrets.max_age_seconds)
    return None
