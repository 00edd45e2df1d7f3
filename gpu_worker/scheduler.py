"""Admission control for one model: at most `slots` requests run, the rest wait here.

llama-server's own queue is plain FIFO, so the worker never sends it more requests than
it has slots and decides the order itself. A pure asyncio component (no I/O), so its
ordering rules are unit-tested without an engine.

Order of admission, when a slot frees up:
1. Priority class: high before normal before low. Aging lifts a waiting request one
   class per `aging_seconds` waited (low -> normal -> high), so low priority is never
   starved by a steady stream of higher-priority work.
2. Fairness inside the best class: the user admitted least recently goes first
   (round-robin across users), so a user's burst of N requests interleaves with other
   users' requests instead of running ahead of them.
3. Arrival order for the same user.

The queue is bounded (`max_queue`); past it, `acquire` raises QueueFullError with a
Retry-After estimated from recent service times. Picking is a linear scan of the bounded
queue, which is cheap next to a single generated token.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum

from gpu_worker.config import Mode
from gpu_worker.errors import QueueFullError


class Priority(IntEnum):
    HIGH = 0
    NORMAL = 1
    LOW = 2

    @classmethod
    def parse(cls, text: str) -> Priority:
        return cls[text.strip().upper()]


@dataclass(frozen=True)
class ModePolicy:
    """What a mode changes: the slot count (engine `-np` and admission limit) and aging."""

    slot_factor: float
    aging_seconds: float
    description: str

    def slots(self, parallel: int) -> int:
        return max(1, math.floor(parallel * self.slot_factor))


MODE_POLICIES: dict[Mode, ModePolicy] = {
    # Fewer concurrent streams share the CPU/GPU, so each admitted request gets its
    # tokens sooner; priorities stay strict longer (slow aging).
    Mode.LATENCY: ModePolicy(0.5, 30.0, "slots = parallel/2 (min 1), aging 30 s"),
    Mode.BALANCED: ModePolicy(1.0, 10.0, "slots = parallel, aging 10 s"),
    # More concurrent streams fill larger batches (more tokens/s in total, slower per
    # stream; KV memory grows with slots); priorities blur quickly (fast aging).
    Mode.THROUGHPUT: ModePolicy(2.0, 3.0, "slots = 2 x parallel, aging 3 s"),
}


@dataclass(eq=False)
class _Waiter:
    priority: Priority
    user: str
    seq: int
    enqueued: float
    future: asyncio.Future[None]


@dataclass(eq=False)
class Ticket:
    """One admitted request. `release()` is idempotent, so every exit path may call it."""

    scheduler: FairScheduler
    user: str
    admitted: float
    released: bool = field(default=False)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.scheduler._release(self)


class FairScheduler:
    def __init__(
        self,
        slots: int,
        max_queue: int,
        aging_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self.max_queue = max_queue
        self.aging_seconds = aging_seconds
        self._clock = clock
        self._waiting: list[_Waiter] = []
        self._active = 0
        self._seq = itertools.count()
        self._admissions = itertools.count()
        # Only users with a request waiting or running are remembered (bounded memory).
        self._last_admitted: dict[str, int] = {}
        self._per_user: dict[str, int] = {}
        self._avg_service = 1.0  # seconds, EWMA; feeds Retry-After

    @property
    def active(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def idle(self) -> bool:
        return self._active == 0 and not self._waiting

    def retry_after(self) -> float:
        """Seconds until a place in the queue is likely to free up."""
        return max(1.0, self._avg_service * (len(self._waiting) + 1) / self.slots)

    async def acquire(self, priority: Priority = Priority.NORMAL, user: str = "") -> Ticket:
        if self._active < self.slots and not self._waiting:
            return self._admit(user)
        if len(self._waiting) >= self.max_queue:
            raise QueueFullError(
                f"The queue for this model is full ({self.max_queue} waiting)",
                retry_after=self.retry_after(),
            )
        loop = asyncio.get_running_loop()
        waiter = _Waiter(priority, user, next(self._seq), self._clock(), loop.create_future())
        self._waiting.append(waiter)
        self._per_user[user] = self._per_user.get(user, 0) + 1
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                # Admitted in the same tick the caller was cancelled: hand the slot on.
                self._per_user[user] -= 1  # the waiting count; _release drops the admission
                self._release(self._ticket(user), record=False)
            else:
                self._waiting.remove(waiter)
                self._release_user(user)
            raise
        # _dispatch counted the admission; the ticket only records it.
        self._per_user[user] -= 1
        return self._ticket(user)

    @asynccontextmanager
    async def slot(
        self, priority: Priority = Priority.NORMAL, user: str = ""
    ) -> AsyncIterator[Ticket]:
        ticket = await self.acquire(priority, user)
        try:
            yield ticket
        finally:
            ticket.release()

    def waiting_order(self) -> list[tuple[str, Priority]]:
        """The current queue as it would be admitted (for tests and /v1/models/list)."""
        snapshot = list(self._waiting)
        last = dict(self._last_admitted)
        order = []
        counter = next(self._admissions)
        while snapshot:
            pick = self._pick(snapshot, last)
            snapshot.remove(pick)
            counter += 1
            last[pick.user] = counter
            order.append((pick.user, pick.priority))
        return order

    # --- internals -------------------------------------------------------------------

    def _effective_class(self, waiter: _Waiter, now: float) -> int:
        steps = int((now - waiter.enqueued) // self.aging_seconds)
        return max(0, int(waiter.priority) - steps)

    def _pick(self, waiting: list[_Waiter], last: dict[str, int]) -> _Waiter:
        now = self._clock()
        return min(
            waiting,
            key=lambda w: (self._effective_class(w, now), last.get(w.user, -1), w.seq),
        )

    def _admit(self, user: str) -> Ticket:
        self._active += 1
        self._last_admitted[user] = next(self._admissions)
        self._per_user[user] = self._per_user.get(user, 0) + 1
        return self._ticket(user)

    def _ticket(self, user: str) -> Ticket:
        return Ticket(self, user, self._clock())

    def _dispatch(self) -> None:
        while self._active < self.slots and self._waiting:
            waiter = self._pick(self._waiting, self._last_admitted)
            self._waiting.remove(waiter)
            self._admit(waiter.user)
            waiter.future.set_result(None)

    def _release_user(self, user: str) -> None:
        left = self._per_user.get(user, 0) - 1
        if left <= 0:
            self._per_user.pop(user, None)
            self._last_admitted.pop(user, None)
        else:
            self._per_user[user] = left

    def _release(self, ticket: Ticket, *, record: bool = True) -> None:
        if record:
            served = self._clock() - ticket.admitted
            self._avg_service = 0.8 * self._avg_service + 0.2 * max(served, 0.001)
        self._active -= 1
        self._release_user(ticket.user)
        self._dispatch()
