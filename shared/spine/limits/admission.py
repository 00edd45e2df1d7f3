"""Which counters a request takes from, and what a refusal says.

A request takes one from its principal's requests-per-minute counter and its
estimated tokens from the tokens-per-minute counter, the same from its model's
counters (models.yaml `limits`), and its estimated cost from the principal's daily
and monthly USD budgets. All are taken in one statement, all or none
(`spine.storage.limits.admit`). After the call, `settle` replaces the estimates with
the real tokens and cost.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from spine.auth.api_keys import principal_for_key, unknown_key
from spine.auth.principal import KeyLimits, Principal
from spine.errors import QuotaExceededError, RateLimitError
from spine.limits.headers import reset_text
from spine.observability import get_logger
from spine.registry.schema import ModelEntry
from spine.settings import LimitsSettings
from spine.storage.db import Connection, Database
from spine.storage.limits import (
    PRINCIPAL_SUBJECT,
    Adjustment,
    CounterRequest,
    CounterState,
    admit,
    authenticate_and_admit,
    principal_counter_subject,
    settle,
)

logger = get_logger(__name__)

# Share of admissions that also delete a batch of expired windows (same statement).
CLEANUP_PROBABILITY = 0.01
_PER_MILLION = Decimal(1_000_000)
_BUDGET_NAMES = {"usd_day": "daily", "usd_month": "monthly"}


@dataclass
class Reservation:
    """What a request took; settled once its real usage is known."""

    counters: list[CounterState]
    tokens: int
    cost_usd: Decimal
    # Amounts still held as estimates: the first settlement replaces them, later
    # ones (a fallback's second call) only add.
    held_tokens: int = 0
    held_cost_usd: Decimal = field(default_factory=Decimal)

    def __post_init__(self) -> None:
        self.held_tokens = self.tokens
        self.held_cost_usd = self.cost_usd

    @property
    def holds_estimates(self) -> bool:
        return self.held_tokens != 0 or self.held_cost_usd != 0

    def headers(self) -> dict[str, str]:
        """x-ratelimit-{limit,remaining,reset}-{requests,tokens} from the tightest
        counter of each kind; none for a kind with no limit."""
        out: dict[str, str] = {}
        for metric in ("requests", "tokens"):
            states = [c for c in self.counters if c.request.metric == metric]
            if not states:
                continue
            tightest = min(states, key=lambda c: c.limit - c.used)
            out.update(_headers_for(tightest, metric))
        return out


def estimate_tokens(body_bytes: int, max_tokens: int | None) -> int:
    """Prompt tokens guessed from the body's size in bytes (about 4 bytes a token in
    JSON chat bodies) plus the output the client allows; `settle` corrects it."""
    return math.ceil(body_bytes / 4) + max(0, max_tokens or 0)


def estimate_cost(entry: ModelEntry | None, body_bytes: int, max_tokens: int | None) -> Decimal:
    if entry is None:
        return Decimal(0)
    prompt = Decimal(math.ceil(body_bytes / 4))
    output = Decimal(max(0, max_tokens or 0))
    pricing = entry.pricing
    return (
        prompt * Decimal(str(pricing.input)) + output * Decimal(str(pricing.output))
    ) / _PER_MILLION


def counters_for(
    principal: Principal,
    settings: LimitsSettings,
    entry: ModelEntry | None,
    *,
    tokens: int,
    cost_usd: Decimal,
    requests: int = 1,
) -> list[CounterRequest]:
    # A key whose overrides came with it is resolved here (no database read when
    # nothing is limited); one whose overrides are unknown lets spine_admit read them.
    return _counters(
        principal_counter_subject(principal.tenant, principal.subject),
        principal.limits,
        settings,
        entry,
        unknown_key=principal.api_key_id is not None and principal.limits is None,
        tokens=tokens,
        cost_usd=cost_usd,
        requests=requests,
    )


def _counters(
    who: str,
    known: KeyLimits | None,
    settings: LimitsSettings,
    entry: ModelEntry | None,
    *,
    unknown_key: bool,
    tokens: int,
    cost_usd: Decimal,
    requests: int = 1,
) -> list[CounterRequest]:
    defaults = {
        "requests": _limit(settings.default_rpm),
        "tokens": _limit(settings.default_tpm),
        "usd_day": _limit(settings.daily_budget_usd),
        "usd_month": _limit(settings.monthly_budget_usd),
    }
    if known is not None:
        overrides = {
            "requests": known.rpm,
            "tokens": known.tpm,
            "usd_day": known.daily_budget_usd,
            "usd_month": known.monthly_budget_usd,
        }
        for metric, value in overrides.items():
            if value is not None:
                defaults[metric] = Decimal(value) if value > 0 else None
    amounts = {
        "requests": Decimal(requests),
        "tokens": Decimal(tokens),
        "usd_day": cost_usd,
        "usd_month": cost_usd,
    }
    windows = {"requests": "minute", "tokens": "minute", "usd_day": "day", "usd_month": "month"}
    counters = [
        CounterRequest(who, metric, windows[metric], amounts[metric], limit, unknown_key)
        for metric, limit in defaults.items()
    ]
    if entry is not None:
        model = f"model:{entry.id}"
        if entry.limits.rpm:
            counters.append(
                CounterRequest(
                    model, "requests", "minute", Decimal(requests), Decimal(entry.limits.rpm)
                )
            )
        if entry.limits.tpm:
            counters.append(
                CounterRequest(
                    model, "tokens", "minute", Decimal(tokens), Decimal(entry.limits.tpm)
                )
            )
    # Without a key to override them, unlimited counters need no database trip.
    return [c for c in counters if c.key_override or c.limit is not None]


async def admit_request(
    conn: Connection,
    principal: Principal,
    settings: LimitsSettings,
    entry: ModelEntry | None,
    *,
    tokens: int,
    cost_usd: Decimal,
    requests: int = 1,
) -> Reservation | None:
    """Take the request's share of every limit, or raise `RateLimitError` /
    `QuotaExceededError` (nothing taken). None when no limit applies. `requests`:
    several requests admitted at once (a group of batch lines), `tokens` and
    `cost_usd` their sum."""
    counters = counters_for(
        principal, settings, entry, tokens=tokens, cost_usd=cost_usd, requests=requests
    )
    if not counters:
        return None
    states = await admit(
        conn,
        counters,
        # The key's overrides are read in the statement only when not known yet.
        api_key_id=principal.api_key_id if principal.limits is None else None,
        cleanup=random.random() < CLEANUP_PROBABILITY,  # noqa: S311 (sampling, not security)
    )
    refused = next((s for s in states if not s.admitted), None)
    if refused is not None:
        raise _refusal(refused, principal)
    return Reservation(counters=states, tokens=tokens, cost_usd=cost_usd)


async def admit_api_key_request(
    conn: Connection,
    token: str,
    settings: LimitsSettings,
    entry: ModelEntry | None,
    *,
    tokens: int,
    cost_usd: Decimal,
) -> tuple[Principal, Reservation | None]:
    """Authenticate an API key and take the request's limits in one round trip:
    `authenticate_api_key` then `admit_request`, fused. 401 for an unknown key (no
    counter taken); otherwise as `admit_request`."""

    counters = _counters(
        PRINCIPAL_SUBJECT,
        None,
        settings,
        entry,
        unknown_key=True,
        tokens=tokens,
        cost_usd=cost_usd,
    )
    row, states = await authenticate_and_admit(
        conn,
        token,
        counters,
        cleanup=random.random() < CLEANUP_PROBABILITY,  # noqa: S311 (sampling, not security)
    )
    if row is None:
        raise unknown_key(token)
    principal = principal_for_key(row)
    refused = next((s for s in states if not s.admitted), None)
    if refused is not None:
        raise _refusal(refused, principal)
    if not states:
        return principal, None
    return principal, Reservation(counters=states, tokens=tokens, cost_usd=cost_usd)


async def settle_reservation(
    conn: Connection, reservation: Reservation, *, tokens: int, cost_usd: Decimal
) -> None:
    """Replace what is still held as an estimate by the real `tokens` and cost."""
    await settle(conn, settlement(reservation, tokens=tokens, cost_usd=cost_usd))


def shares(reservation: Reservation, parts: Sequence[tuple[int, Decimal]]) -> list[Reservation]:
    """A reservation taken for several requests at once, as one per request (its
    estimated tokens and cost in `parts`, which sum to the whole): each is settled
    or given back on its own, on the same counters."""
    return [Reservation(reservation.counters, tokens, cost) for tokens, cost in parts]


def settlement(reservation: Reservation, *, tokens: int, cost_usd: Decimal) -> list[Adjustment]:
    """The counter changes that replace the held estimates by the real `tokens`
    and cost; marks the estimates as settled (later calls only add)."""
    token_delta = Decimal(tokens - reservation.held_tokens)
    cost_delta = cost_usd - reservation.held_cost_usd
    reservation.held_tokens = 0
    reservation.held_cost_usd = Decimal(0)
    adjustments: list[Adjustment] = []
    for state in reservation.counters:
        metric = state.request.metric
        if metric == "tokens":
            delta = token_delta
        elif metric in _BUDGET_NAMES:
            delta = cost_delta
        else:
            continue
        adjustments.append(Adjustment(state.request.subject, metric, state.window_start, delta))
    return adjustments


def _limit(value: float) -> Decimal | None:
    return Decimal(str(value)) if value > 0 else None


def _seconds_left(state: CounterState) -> float:
    return max(0.0, (state.window_end - state.now).total_seconds())


def _headers_for(state: CounterState, metric: str) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{metric}": str(int(state.limit)),
        f"x-ratelimit-remaining-{metric}": str(max(0, int(state.limit - state.used))),
        f"x-ratelimit-reset-{metric}": reset_text(_seconds_left(state)),
    }


def _refusal(state: CounterState, principal: Principal) -> RateLimitError:
    wait = _seconds_left(state)
    metric = state.request.metric
    if metric in _BUDGET_NAMES:
        name = _BUDGET_NAMES[metric]
        return QuotaExceededError(
            f"The {name} budget of ${state.limit} USD for '{principal.subject}' would be "
            f"exceeded (spent ${state.used:.6f}, this request is estimated at "
            f"${state.request.amount:.6f}). It resets in {reset_text(wait)}.",
            retry_after=wait,
        )
    headers = _headers_for(state, metric) if metric in ("requests", "tokens") else {}
    subject = state.request.subject
    if subject.startswith("model:"):
        scope = "model " + subject.removeprefix("model:")
    else:
        scope = f"principal '{principal.subject}'" + (
            f" of tenant '{principal.tenant}'" if principal.tenant else ""
        )
    unit = "requests per minute" if metric == "requests" else "tokens per minute"
    return RateLimitError(
        f"Rate limit reached for {scope} on {unit}: limit {int(state.limit)}, used "
        f"{int(state.used)}, requested {int(state.request.amount)}. "
        f"Please try again in {reset_text(wait)}.",
        retry_after=wait,
        headers=headers,
    )


# --- with the database handed in (the HTTP layer's entry points) -----------------------


async def admit_with(
    database: Database,
    principal: Principal,
    settings: LimitsSettings,
    entry: ModelEntry | None,
    *,
    tokens: int,
    cost_usd: Decimal,
    requests: int = 1,
) -> Reservation | None:
    """`admit_request` on a live connection. Retried once on a fresh connection when
    the first one turns out dead (a restart while the container was idle): the
    statement never reached the server then. Should it have committed before the link
    broke, the request is counted twice in its window: the safe side of a limit."""

    async def admit(conn: Connection) -> Reservation | None:
        return await admit_request(
            conn, principal, settings, entry, tokens=tokens, cost_usd=cost_usd, requests=requests
        )

    return await database.run(admit)


async def authenticate_and_admit_with(
    database: Database,
    token: str,
    settings: LimitsSettings,
    entry: ModelEntry | None,
    *,
    tokens: int,
    cost_usd: Decimal,
) -> tuple[Principal, Reservation | None]:
    """`admit_api_key_request` on a live connection, retried as `admit_with`."""

    async def admit(conn: Connection) -> tuple[Principal, Reservation | None]:
        return await admit_api_key_request(
            conn, token, settings, entry, tokens=tokens, cost_usd=cost_usd
        )

    return await database.run(admit)


async def release_with(database: Database, reservation: Reservation) -> None:
    """Give back estimates no provider call settled (the request failed before
    reaching one); a no-op, without a database trip, once a call settled them."""
    if not reservation.holds_estimates:
        return
    try:
        conn = await database.connection()
        await settle_reservation(conn, reservation, tokens=0, cost_usd=Decimal(0))
    except Exception:
        # The estimate stays counted until its window ends: the safe side.
        logger.exception("rate limit release failed")
