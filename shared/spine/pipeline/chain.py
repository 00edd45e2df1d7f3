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
(`spine.pipeline.routing`, by weight) before the next model. Upstream failures also count
towards the deployment's cooldown (shared in Postgres); cooled-down deployments are
skipped while another member of the chain is available. Only a chain of more than one
deployment or model pays for the cooldown read.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar, cast

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
from spine.pipeline.context import CallContext
from spine.pipeline.kinds import EndpointKind
from spine.pipeline.recording import record_call
from spine.pipeline.routing import deployment_order
from spine.pipeline.targets import ProviderNotConfiguredError, target_for
from spine.providers.base import Target
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import ModelEntry, RetryPolicy
from spine.schemas.openai import ModelRequest, Usage
from spine.storage import cooldowns
from spine.storage.db import Database

logger = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R", bound=ModelRequest)

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
                strict=resolved.strict,
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
    """Prepares the request for each chain member (the kind's `prepare`) and
    remembers what was refused.

    The client's error for the requested model is raised unless another of its
    deployments (another provider) accepts the request; fallbacks never hide it. A
    context-window overflow skips every model with a window no larger."""

    kind: EndpointKind[R, Any]
    request: R
    streaming: bool
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
            effective = self.kind.prepare(self.request, model, self.streaming)
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


@dataclass
class Attempt(Generic[R]):
    """One try of one chain member: the caller calls the provider with `request` at
    `candidate.target` and reports a failure with `fail`."""

    candidate: Candidate
    request: R
    error: SpineError | None = None

    def fail(self, error: SpineError) -> None:
        self.error = error


class Serving(Generic[R]):
    """Retries, deployments and fallbacks of one request, as a sequence of attempts:

        serving = Serving(ctx, kind, request, resolved, streaming=False)
        async with aclosing(serving.attempts()) as attempts:
            async for attempt in attempts:
                try:
                    answer = await call(attempt)
                except SpineError as exc:
                    attempt.fail(exc)
                    continue
                break

    After a failed attempt the sequence decides what comes next (a retry after its
    backoff, another deployment, a fallback); when nothing can serve the request it
    writes the request's usage row and raises the last error. No callback: the caller
    drives every provider call itself.
    """

    def __init__(
        self,
        ctx: CallContext,
        kind: EndpointKind[R, Any],
        request: R,
        resolved: ResolvedModel,
        *,
        streaming: bool,
    ) -> None:
        self.ctx = ctx
        self.kind = kind
        self.request = request
        self.resolved = resolved
        self.streaming = streaming
        self.failures: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def served(self, attempt: Attempt[R], value: T) -> Served[T]:
        """The answer of the attempt that succeeded, with the failures before it."""
        if self.failures:
            logger.info(
                "request served after failures",
                extra={
                    "model": attempt.candidate.resolved.entry.id,
                    "requested": self.resolved.entry.id,
                    "failed": self.failures,
                },
            )
        return Served(value, attempt.candidate, self.resolved.entry.id, self.failures)

    async def attempts(self) -> AsyncGenerator[Attempt[R], None]:
        ctx, resolved, failures = self.ctx, self.resolved, self.failures
        chain = serving_chain(ctx, resolved)
        primaries = sum(1 for model in chain if model.entry.id == resolved.entry.id)
        cooled = await _cooled(ctx.database, chain) if len(chain) > 1 else set()
        checks = _Checks(self.kind, self.request, self.streaming, primaries, failures)
        last_error: SpineError | None = None
        last: Candidate | None = None
        unconfigured: list[ProviderNotConfiguredError] = []
        for index, model in enumerate(chain):
            entry = model.entry
            callable_, effective, overflow = checks.check(index, model)
            if not callable_:
                last_error = overflow or last_error
                continue
            deployment = _deployment_name(entry)
            if (entry.id, deployment) in cooled and _others_available(chain, index, cooled):
                logger.info(
                    "cooled deployment skipped", extra={"model": entry.id, "at": deployment}
                )
                continue
            try:
                target = target_for(entry, ctx.settings, ctx.principal)
            except ProviderNotConfiguredError as exc:
                last_error = exc
                unconfigured.append(exc)
                failures.append(_failure(entry.id, deployment, exc))
                continue
            last = Candidate(model, target)
            # This model's tries: retry what may pass on a second try, within the
            # model's attempts and time budget.
            tried_since = time.monotonic()
            tries = 0
            while True:
                attempt = Attempt(last, cast(R, effective))
                yield attempt
                error = attempt.error
                if error is None:
                    return  # the caller has its answer
                tries += 1
                delay = await self._after_failure(last, error, tries, tried_since)
                if delay is None:
                    break
                await asyncio.sleep(delay)
            last_error = error
            if isinstance(error, ContextWindowExceededError):
                checks.overflowed(entry.context_window)
            elif not falls_back(error):
                break
            emit_metric("Fallbacks", 1, "Count", model=entry.id)
        checks.raise_rejected()
        if last_error is None:  # every model was skipped: cannot happen for the primary
            raise InvalidRequestError("No model can serve this request.", param="model")
        if isinstance(last_error, ProviderNotConfiguredError):
            last_error = _not_configured(resolved, unconfigured)
        await _record_failure(
            ctx,
            last,
            endpoint=self.kind.name,
            error=last_error,
            failures=failures,
            started=self.started,
        )
        raise last_error

    async def _after_failure(
        self, candidate: Candidate, error: SpineError, tries: int, tried_since: float
    ) -> float | None:
        """Note a failed try; the seconds to wait before the next try of the same
        model, or None when it gets no more (not retryable, out of attempts or of its
        time budget)."""
        entry, deployment = candidate.resolved.entry, candidate.target.deployment
        self.failures.append(_failure(entry.id, deployment, error))
        if counts_towards_cooldown(error):
            await _note_failure(self.ctx.database, entry, deployment, error)
        policy = entry.retry
        if not is_retryable(error) or tries >= policy.attempts:
            return None
        delay = backoff_delay(error, tries - 1, policy)
        if time.monotonic() - tried_since + delay > policy.budget_seconds:
            return None
        emit_metric("Retries", 1, "Count", model=entry.id)
        return delay


async def _record_failure(
    ctx: CallContext,
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


def _not_configured(
    requested: ResolvedModel, errors: list[ProviderNotConfiguredError]
) -> ProviderNotConfiguredError:
    """One error naming the requested model and every member of its chain that could
    not be called for want of configuration (not only the last fallback's)."""
    if len(errors) == 1:
        return errors[0]
    reasons = "; ".join(error.message for error in errors)
    return ProviderNotConfiguredError(
        f"Model '{requested.requested}' cannot be served: neither it nor its fallbacks are "
        f"configured. {reasons}"
    )


def _failure(model: str, deployment: str, error: SpineError) -> dict[str, Any]:
    return {"model": model, "deployment": deployment, "code": error.code}


async def _cooled(database: Database, chain: list[ResolvedModel]) -> set[tuple[str, str]]:
    """Cooling deployments of the chain; empty if the database cannot say (a cooldown
    is an optimisation, never a reason to fail a request)."""
    try:
        conn = await database.connection()
        return await cooldowns.cooled_down(conn, [m.entry.id for m in chain])
    except Exception:
        logger.warning("cooldown read failed", exc_info=True)
        return set()


async def _note_failure(
    database: Database, entry: ModelEntry, deployment: str, error: SpineError
) -> None:
    policy = entry.cooldown
    try:
        conn = await database.connection()
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
