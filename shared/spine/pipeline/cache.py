"""The exact-match response cache (docs/cache.md).

The cache takes part in a request when its model (or profile) has a `cache_ttl` above
0 and the request is deterministic (temperature 0, or a seed) or the client forces it
(`x-spine-cache: force`). The key is the SHA-256 of canonical JSON holding the
caller's scope, the endpoint and the effective request: the resolved model id and
every field after the profile's and model's defaults, minus the fields that do not
change the answer (`IGNORED_FIELDS`).

The scope is the caller's tenant (else its subject): a cache shared across tenants
would tell one tenant, through `x-cache: HIT` or the timing of a hit, which prompts
another tenant sent. So tenants never share rows.

The cache is an optimisation: a database failure while reading or writing it is
logged and the provider answers, never an error for the client.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from spine.auth.principal import Principal
from spine.observability import emit_metric, get_logger
from spine.pipeline.context import CallContext
from spine.pipeline.recording import record_call
from spine.providers.base import Target
from spine.registry.resolve import ResolvedModel
from spine.registry.schema import ProviderKind
from spine.schemas.openai import ChatCompletion, SamplingParams, TextCompletion, Usage
from spine.storage import response_cache

if TYPE_CHECKING:
    from spine.storage.response_cache import CachedRow

logger = get_logger(__name__)

Answer = ChatCompletion | TextCompletion

# Fields that do not change the answer: how it travels (stream, stream_options), the
# caller's own tags (user, metadata) and Spine's session and storage flags.
IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "metadata", "session_id", "store"})
# Bumped when the key's recipe changes, so old rows are simply never found again.
KEY_VERSION = 1
# Answers complete by the request's own terms. A content_filter stop depends on the
# provider's policy of the day, not on the request, so it is not kept.
CACHEABLE_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "function_call"})


@dataclass(frozen=True)
class CacheControl:
    """What the client asked of the cache (request headers, read in spine.api)."""

    force: bool = False  # cache a non-deterministic request too
    read: bool = True  # False: answer from the provider (Cache-Control: no-cache)
    write: bool = True  # False: do not keep the answer (Cache-Control: no-store)
    # Whether an answer is fit to serve and keep (a capability's checks of its
    # structured output): an unfit one is never kept, and an unfit hit is a miss.
    keep: Callable[[Answer], bool] | None = None

    def fit(self, answer: Answer) -> bool:
        return self.keep is None or self.keep(answer)


@dataclass(frozen=True)
class CachePlan:
    """How the cache takes part in one request."""

    key: bytes
    scope: str
    endpoint: str
    ttl: int
    read: bool
    write: bool


@dataclass(frozen=True)
class CacheHit:
    answer: Answer
    row: CachedRow
    resolved: ResolvedModel  # the model that gave the cached answer
    target: Target  # where that answer came from (no key resolved: nothing is called)

    @property
    def usage(self) -> Usage:
        return self.answer.usage

    def usage_metadata(self) -> dict[str, Any]:
        return {"cache": "hit", "cached_request_id": self.row.request_id}


def cache_scope(principal: Principal) -> str:
    """Whose rows a request may read and write: its tenant's, else its subject's."""
    if principal.tenant:
        return f"tenant:{principal.tenant}"
    return f"subject:{principal.subject}"


def request_key(scope: str, endpoint: str, effective: SamplingParams) -> bytes:
    """SHA-256 of the canonical JSON of the scope, endpoint and effective request."""
    fields = effective.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude=set(IGNORED_FIELDS)
    )
    canonical = json.dumps(
        {"v": KEY_VERSION, "scope": scope, "endpoint": endpoint, "request": fields},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).digest()


def is_deterministic(effective: SamplingParams) -> bool:
    return effective.temperature == 0 or effective.seed is not None


def plan_cache(
    ctx: CallContext,
    resolved: ResolvedModel,
    endpoint: str,
    effective: SamplingParams | None,
    control: CacheControl | None,
) -> CachePlan | None:
    """The cache's part in this request; None when it takes none (TTL 0, a
    non-deterministic request not forced, `no-store`, or a request the requested
    model cannot take as it is: `effective` None).

    `effective` is the request as the requested model receives it, after its
    defaults and checks, so a cached answer is never served to a request the model
    would refuse."""
    control = control or CacheControl()
    if effective is None or resolved.cache_ttl <= 0 or not (control.read or control.write):
        return None
    if not (control.force or is_deterministic(effective)):
        return None
    scope = cache_scope(ctx.principal)
    return CachePlan(
        key=request_key(scope, endpoint, effective),
        scope=scope,
        endpoint=endpoint,
        ttl=resolved.cache_ttl,
        read=control.read,
        write=control.write,
    )


async def find(ctx: CallContext, resolved: ResolvedModel, plan: CachePlan) -> CacheHit | None:
    """The live cached answer for `plan`, if the plan reads the cache and one exists
    whose model is still in the registry."""
    if not plan.read:
        return None
    try:
        conn = await ctx.database.connection()
        row = await response_cache.lookup(conn, plan.key, plan.scope, ttl=plan.ttl)
    except Exception:
        logger.warning("response cache read failed", exc_info=True)
        row = None
    hit = _hit(ctx, resolved, plan, row) if row is not None else None
    emit_metric("CacheHits" if hit else "CacheMisses", 1, "Count", model=resolved.entry.id)
    return hit


def _hit(
    ctx: CallContext, resolved: ResolvedModel, plan: CachePlan, row: CachedRow
) -> CacheHit | None:
    entry = ctx.registry.get(row.model_id)
    if entry is None:
        return None  # the model that answered is gone from models.yaml
    # Text completions keep their own shape; every other cached kind (chat, and the
    # kinds built on it such as `capability.<name>`) answers chat completions.
    answer_type = TextCompletion if plan.endpoint == "completions" else ChatCompletion
    try:
        answer: Answer = answer_type.model_validate(row.response)
    except ValidationError:
        logger.warning("cached answer unreadable", extra={"model": row.model_id})
        return None
    try:
        provider = ProviderKind(row.provider)
    except ValueError:
        provider = entry.provider
    answered = (
        resolved if entry.id == resolved.entry.id else dataclasses.replace(resolved, entry=entry)
    )
    target = Target(
        entry=entry,
        provider=provider,
        model=entry.model,
        base_url=None,
        api_key=None,
        timeouts=entry.timeouts,
        deployment=row.deployment,
    )
    return CacheHit(answer=answer, row=row, resolved=answered, target=target)


async def record_hit(
    ctx: CallContext, hit: CacheHit, endpoint: str, *, latency_ms: float, stream: bool
) -> None:
    """The hit's one usage row: the cached answer's tokens, no provider cost."""
    metadata: dict[str, Any] = hit.usage_metadata()
    if stream:
        metadata["stream"] = True
    await record_call(
        ctx,
        hit.resolved,
        hit.target,
        endpoint,
        usage=hit.usage,
        latency_ms=latency_ms,
        error=None,
        metadata=metadata,
        cache_hit=True,
    )


def is_complete(answer: Answer) -> bool:
    """Whether the answer may be kept: every choice finished by the request's terms."""
    # One choice: a replayed stream carries one (several come from n > 1 or several
    # prompts, rare enough to go uncached).
    return len(answer.choices) == 1 and all(
        choice.finish_reason in CACHEABLE_FINISH_REASONS for choice in answer.choices
    )


async def store_answer(
    ctx: CallContext, plan: CachePlan, answer: Answer, *, provider: str, deployment: str
) -> None:
    """Keep `answer` (its `model` is the registry model that gave it) for the plan's
    TTL, if the plan writes and the answer is complete."""
    if not plan.write or not is_complete(answer):
        return
    entry = response_cache.CacheEntry(
        key=plan.key,
        scope=plan.scope,
        endpoint=plan.endpoint,
        model_id=answer.model,
        provider=provider,
        deployment=deployment,
        request_id=ctx.request_id,
        response=answer.model_dump(mode="json"),
    )
    try:
        await response_cache.store(await ctx.database.connection(), entry, ttl=plan.ttl)
    except Exception:
        logger.warning("response cache write failed", exc_info=True, extra={"model": answer.model})
