"""Retries, fallbacks and cooldowns around one client request.

The requested model and its `fallbacks` (depth first, each model once) form a chain.
Each model in turn gets the request with its own defaults and checks (a fallback
that cannot serve the request, e.g. lacking a capability, is skipped), and up to
`retry.attempts` tries with backoff inside `retry.budget_seconds`. What happens
after a failure depends on its kind:

- retried, then the next model: 429, 5xx, timeouts, lost connections, bad answers;
- the next model at once: the upstream refused the operator's key or quota, the
  model is not configured or installed here, the prompt overflowed the context
  window (then only a model with a larger window is tried);
- the client's error, returned as is: any other 4xx (bad parameter, 404, ...).

Each model is tried on each of its deployments in the router's order
(`spine.chat.routing`, by weight) before the next model. Upstream failures also count
towards the deployment's cooldown (shared in Postgres); cooled-down deployments are
skipped while another member of the chain is available. Only a chain of more than one
deployment or model pays for the cooldown read.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from spine.chat.recording import record_call
from spine.chat.routing import deployment_order
from spine.chat.targets import ProviderNotConfiguredError, target_for
from spine.errors import (
    ContextWindowExceededError,
    InvalidRequestError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
    SpineError,
    UpstreamError,
)
from spine.observability import emit_metric, get_logger
from spine.providers.base import Target
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import ModelEntry, RetryPolicy
from spine.schemas.openai import Usage

if TYPE_CHECKING:
    from spine.chat.service import CallContext

logger = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Upstream failures that retrying the same model will not fix.
_NOT_RETRIED_CODES = frozenset({"upstream_auth_failed", "upstream_quota_exhausted"})


@dataclass(frozen=True)
class Candidate:
    resolved: ResolvedModel
    target: Target


@dataclass
class Served(Generic[T]):
    """The answer and who gave it, with the failed attempts before it."""

    value: T
    candidate: Candidate
    primary: str
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fallback_from(self) -> str | None:
        answered = self.candidate.resolved.entry.id
        return self.primary if answered != self.primary else None

    def metadata(self) -> dict[str, Any]:
        """What the usage row says about retries and fallbacks (nothing if none)."""
        if not self.failures:
            return {}
        meta: dict[str, Any] = {"attempts": len(self.failures) + 1, "failures": self.failures}
        if self.fallback_from is not None:
            meta["fallback_from"] = self.fallback_from
        return meta


def is_retryable(error: SpineError) -> bool:
    if isinstance(error, RateLimitError):
        return not isinstance(error, QuotaExceededError)
    if isinstance(error, UpstreamError):
        return error.code not in _NOT_RETRIED_CODES
    return False


def falls_back(error: SpineError) -> bool:
    """Whether another model may serve the request after this failure."""
    return is_retryable(error) or isinstance(
        error,
        UpstreamError
        | ContextWindowExceededError
        | ProviderNotConfiguredError
        | ServiceUnavailableError,
    )


def counts_towards_cooldown(error: SpineError) -> bool:
    """Failures of the deployment itself, not of the request."""
    return isinstance(error, UpstreamError | RateLimitError) and not isinstance(
        error, QuotaExceededError
    )


def backoff_delay(error: SpineError, attempt: int, policy: RetryPolicy) -> float:
    """Seconds before retry number `attempt + 1`: the provider's Retry-After if it gave
    one, else exponential backoff with full jitter (spreads a herd of retries)."""
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        return error.retry_after
    ceiling = min(policy.max_delay, policy.base_delay * 2**attempt)
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not secrecy


def fallback_chain(registry: Registry, resolved: ResolvedModel) -> list[ResolvedModel]:
    """The requested model, then its fallbacks depth first (the loader rejected
    cycles; each model appears once). Fallbacks keep the request's profile."""
    chain: list[ResolvedModel] = []
    seen: set[str] = set()

    def visit(entry: ModelEntry) -> None:
        if entry.id in seen:
            return
        seen.add(entry.id)
        chain.append(
            ResolvedModel(
                requested=resolved.requested,
                entry=entry,
                profile=resolved.profile,
                profile_params=resolved.profile_params,
                system_prompt=resolved.system_prompt,
                cache_ttl=resolved.cache_ttl,
            )
            if chain
            else resolved
        )
        for name in entry.fallbacks:
            visit(registry.resolve(name).entry)

    visit(resolved.entry)
    return chain


def serving_chain(ctx: CallContext, resolved: ResolvedModel) -> list[ResolvedModel]:
    """The fallback chain with each model once per deployment, in the router's order."""
    user = f"{ctx.principal.tenant or ''}/{ctx.principal.subject}"
    return [
        replace(model, entry=served_by)
        for model in fallback_chain(ctx.registry, resolved)
        for served_by in deployment_order(model.entry, user)
    ]


@dataclass
class _Checks(Generic[R]):
    """Runs `prepare` along the chain and remembers what it refused.

    The client's error for the requested model is raised unless another of its
    deployments (another provider) accepts the request; fallbacks never hide it. A
    context-window overflow skips every model with a window no larger."""

    prepare: Callable[[ResolvedModel], R]
    primaries: int
    failures: list[dict[str, Any]]
    rejected: InvalidRequestError | None = None
    primary_accepted: bool = False
    overflowed_window: int | None = None

    def check(
        self, index: int, model: ResolvedModel
    ) -> tuple[bool, R | None, ContextWindowExceededError | None]:
        """(True, effective request, None) when this chain member may be called; else
        False and the overflow that ruled it out, if that was the reason."""
        if index == self.primaries:
            self.raise_rejected()
        entry = model.entry
        if self.overflowed_window is not None and entry.context_window <= self.overflowed_window:
            return False, None, None
        try:
            effective = self.prepare(model)
        except ContextWindowExceededError as exc:
            self.overflowed(entry.context_window)
            self.failures.append(_failure(entry.id, "-", exc))
            return False, None, exc
        except InvalidRequestError as exc:
            if index < self.primaries:
                self.rejected = self.rejected or exc
            else:
                logger.info("fallback skipped", extra={"model": entry.id, "reason": exc.code})
            return False, None, None
        self.primary_accepted = self.primary_accepted or index < self.primaries
        return True, effective, None

    def overflowed(self, window: int) -> None:
        self.overflowed_window = window

    def raise_rejected(self) -> None:
        if self.rejected is not None and not self.primary_accepted:
            raise self.rejected


async def serve(
    ctx: CallContext,
    resolved: ResolvedModel,
    endpoint: str,
    prepare: Callable[[ResolvedModel], R],
    call: Callable[[Candidate, R], Awaitable[T]],
) -> Served[T]:
    """Run `call` on the chain until one answers. `prepare` applies a model's defaults
    and checks (raising InvalidRequestError when the model cannot serve it). On
    failure the request's usage row is written here and the last error raised."""
    started = time.perf_counter()
    chain = serving_chain(ctx, resolved)
    primaries = sum(1 for model in chain if model.entry.id == resolved.entry.id)
    cooled = await _cooled(chain) if len(chain) > 1 else set()
    failures: list[dict[str, Any]] = []
    checks = _Checks(prepare, primaries, failures)
    last_error: SpineError | None = None
    last: Candidate | None = None
    for index, model in enumerate(chain):
        entry = model.entry
        callable_, effective, overflow = checks.check(index, model)
        if not callable_:
            last_error = overflow or last_error
            continue
        deployment = _deployment_name(entry)
        if (entry.id, deployment) in cooled and _others_available(chain, index, cooled):
            logger.info("cooled deployment skipped", extra={"model": entry.id, "at": deployment})
            continue
        try:
            target = target_for(entry, ctx.settings)
        except ProviderNotConfiguredError as exc:
            last_error = exc
            failures.append(_failure(entry.id, deployment, exc))
            continue
        last = Candidate(model, target)
        try:
            value = await _try_model(last, cast(R, effective), call, failures)
        except SpineError as exc:
            last_error = exc
            if isinstance(exc, ContextWindowExceededError):
                checks.overflowed(entry.context_window)
            elif not falls_back(exc):
                break
            emit_metric("Fallbacks", 1, "Count", model=entry.id)
            continue
        if failures:
            logger.info(
                "request served after failures",
                extra={"model": entry.id, "requested": resolved.entry.id, "failed": failures},
            )
        return Served(value, last, resolved.entry.id, failures)
    checks.raise_rejected()
    if last_error is None:  # every model was skipped: cannot happen for the primary
        raise InvalidRequestError("No model can serve this request.", param="model")
    await _record_failure(
        ctx, resolved, last, endpoint=endpoint, error=last_error, failures=failures, started=started
    )
    raise last_error


async def _try_model(
    candidate: Candidate,
    effective: R,
    call: Callable[[Candidate, R], Awaitable[T]],
    failures: list[dict[str, Any]],
) -> T:
    """One model's tries: retry what may pass on a second try, within the model's
    attempts and time budget. Raises the last failure."""
    entry, deployment = candidate.resolved.entry, candidate.target.deployment
    policy = entry.retry
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return await call(candidate, effective)
        except SpineError as exc:
            failures.append(_failure(entry.id, deployment, exc))
            if counts_towards_cooldown(exc):
                await _note_failure(entry, deployment, exc)
            attempt += 1
            if not is_retryable(exc) or attempt >= policy.attempts:
                raise
            delay = backoff_delay(exc, attempt - 1, policy)
            if time.monotonic() - started + delay > policy.budget_seconds:
                raise
        emit_metric("Retries", 1, "Count", model=entry.id)
        await asyncio.sleep(delay)


async def _record_failure(
    ctx: CallContext,
    resolved: ResolvedModel,
    last: Candidate | None,
    *,
    endpoint: str,
    error: SpineError,
    failures: list[dict[str, Any]],
    started: float,
) -> None:
    if last is None:
        return  # no provider was called (overflow, misconfiguration): nothing to bill
    metadata = {"attempts": len(failures), "failures": failures} if len(failures) > 1 else {}
    await record_call(
        ctx,
        last.resolved,
        last.target,
        endpoint,
        usage=Usage(),
        latency_ms=(time.perf_counter() - started) * 1000,
        error=error,
        metadata=metadata,
    )


def _deployment_name(entry: ModelEntry) -> str:
    """The deployment of a chain member (`ModelEntry.served_by` leaves one)."""
    return entry.deployments[0].name if entry.deployments else "default"


def _others_available(chain: list[ResolvedModel], index: int, cooled: set[tuple[str, str]]) -> bool:
    return any(
        (m.entry.id, _deployment_name(m.entry)) not in cooled
        for i, m in enumerate(chain)
        if i != index
    )


def _failure(model: str, deployment: str, error: SpineError) -> dict[str, Any]:
    return {"model": model, "deployment": deployment, "code": error.code}


async def _cooled(chain: list[ResolvedModel]) -> set[tuple[str, str]]:
    """Cooling deployments of the chain; empty if the database cannot say (a cooldown
    is an optimisation, never a reason to fail a request)."""
    from spine.storage import cooldowns, db

    try:
        conn = await db.connection()
        return await cooldowns.cooled_down(conn, [m.entry.id for m in chain])
    except Exception:
        logger.warning("cooldown read failed", exc_info=True)
        return set()


async def _note_failure(entry: ModelEntry, deployment: str, error: SpineError) -> None:
    from spine.storage import cooldowns, db

    policy = entry.cooldown
    try:
        conn = await db.connection()
        cooling = await cooldowns.record_failure(
            conn,
            entry.id,
            deployment,
            threshold=policy.failures,
            window_seconds=policy.window_seconds,
            cooldown_seconds=policy.seconds,
            error=error.code,
        )
    except Exception:
        logger.warning("cooldown write failed", exc_info=True)
        return
    if cooling:
        logger.warning(
            "deployment cooling down",
            extra={"model": entry.id, "deployment": deployment, "seconds": policy.seconds},
        )
        emit_metric("Cooldowns", 1, "Count", model=entry.id)
