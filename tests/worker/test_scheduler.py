"""The admission scheduler on its own: no engine, real asyncio."""

from __future__ import annotations

import asyncio

import pytest
from gpu_worker.config import Mode
from gpu_worker.errors import QueueFullError
from gpu_worker.scheduler import MODE_POLICIES, FairScheduler, Priority


class FakeClock:
    """Time under the test's control, so aging is exact (the scheduler takes a clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def run_order(scheduler: FairScheduler, requests: list[tuple[str, Priority]]) -> list[str]:
    """Occupy every slot, queue `requests` (labelled), release one at a time; the
    admission order of the labels comes back."""
    holders = [await scheduler.acquire(Priority.NORMAL, "holder") for _ in range(scheduler.slots)]
    order: list[str] = []

    async def one(label: str, priority: Priority) -> None:
        ticket = await scheduler.acquire(priority, label.split("-", maxsplit=1)[0])
        order.append(label)
        await asyncio.sleep(0)
        # Keep the slot until the test lets the next one in.
        await release_gate.wait()
        ticket.release()

    release_gate = asyncio.Event()
    tasks = []
    for label, priority in requests:
        tasks.append(asyncio.create_task(one(label, priority)))
        await settle()
    assert scheduler.queued == len(requests)
    for holder in holders:
        holder.release()
    await settle()
    release_gate.set()
    await asyncio.gather(*tasks)
    return order


async def test_admits_up_to_slots_then_queues() -> None:
    # Given two slots
    scheduler = FairScheduler(slots=2, max_queue=10, aging_seconds=60)
    a = await scheduler.acquire()
    b = await scheduler.acquire()
    # When a third request arrives
    third = asyncio.create_task(scheduler.acquire())
    await settle()
    # Then it waits until a slot is released
    assert scheduler.active == 2 and scheduler.queued == 1 and not third.done()
    a.release()
    await settle()
    assert third.done() and scheduler.active == 2 and scheduler.queued == 0
    b.release()
    third.result().release()
    assert scheduler.idle


async def test_priority_classes_order() -> None:
    scheduler = FairScheduler(slots=1, max_queue=10, aging_seconds=600)
    order = await run_order(
        scheduler,
        [("a-low", Priority.LOW), ("b-normal", Priority.NORMAL), ("c-high", Priority.HIGH)],
    )
    assert order == ["c-high", "b-normal", "a-low"]


async def test_arrival_order_within_a_user_and_class() -> None:
    scheduler = FairScheduler(slots=1, max_queue=10, aging_seconds=600)
    order = await run_order(scheduler, [(f"u-{i}", Priority.NORMAL) for i in range(4)])
    assert order == ["u-0", "u-1", "u-2", "u-3"]


async def test_one_users_burst_does_not_starve_another() -> None:
    # Given user a queued a burst of 4 before user b and c queued one each
    scheduler = FairScheduler(slots=1, max_queue=10, aging_seconds=600)
    requests = [(f"a-{i}", Priority.NORMAL) for i in range(4)]
    requests += [("b-0", Priority.NORMAL), ("c-0", Priority.NORMAL)]
    order = await run_order(scheduler, requests)
    # Then users take turns: b and c do not wait behind a's whole burst
    assert order[:3] == ["a-0", "b-0", "c-0"]
    assert order[3:] == ["a-1", "a-2", "a-3"]


async def test_fairness_alternates_two_bursts() -> None:
    scheduler = FairScheduler(slots=1, max_queue=10, aging_seconds=600)
    requests = [(f"a-{i}", Priority.NORMAL) for i in range(3)]
    requests += [(f"b-{i}", Priority.NORMAL) for i in range(3)]
    order = await run_order(scheduler, requests)
    assert order == ["a-0", "b-0", "a-1", "b-1", "a-2", "b-2"]


async def test_aging_lifts_a_waiting_low_request() -> None:
    # Given a low request that has waited two aging intervals
    clock = FakeClock()
    scheduler = FairScheduler(slots=1, max_queue=10, aging_seconds=5, clock=clock)
    holder = await scheduler.acquire()
    low = asyncio.create_task(scheduler.acquire(Priority.LOW, "patient"))
    await settle()
    clock.now += 10.5
    # When a high request arrives just now
    high = asyncio.create_task(scheduler.acquire(Priority.HIGH, "eager"))
    await settle()
    # Then the aged low request (now class high, and older) goes first
    assert scheduler.waiting_order() == [("patient", Priority.LOW), ("eager", Priority.HIGH)]
    holder.release()
    await settle()
    assert low.done() and not high.done()
    low.result().release()
    await settle()
    high.result().release()


async def test_without_aging_time_high_still_wins() -> None:
    clock = FakeClock()
    scheduler = FairScheduler(slots=1, max_queue=10, aging_seconds=5, clock=clock)
    holder = await scheduler.acquire()
    low = asyncio.create_task(scheduler.acquire(Priority.LOW, "patient"))
    await settle()
    clock.now += 4.9  # less than one aging step
    high = asyncio.create_task(scheduler.acquire(Priority.HIGH, "eager"))
    await settle()
    assert scheduler.waiting_order()[0] == ("eager", Priority.HIGH)
    holder.release()
    await settle()
    assert high.done() and not low.done()
    high.result().release()
    await settle()
    low.result().release()


async def test_queue_is_bounded_with_retry_after() -> None:
    scheduler = FairScheduler(slots=1, max_queue=2, aging_seconds=60)
    holder = await scheduler.acquire()
    waiting = [asyncio.create_task(scheduler.acquire()) for _ in range(2)]
    await settle()
    with pytest.raises(QueueFullError) as caught:
        await scheduler.acquire()
    assert caught.value.status_code == 429
    assert int(caught.value.headers["Retry-After"]) >= 1
    assert scheduler.queued == 2  # the refused request left no trace
    holder.release()
    for task in waiting:
        await settle()
        (await task).release()
    assert scheduler.idle


async def test_cancelled_waiter_leaves_the_queue() -> None:
    scheduler = FairScheduler(slots=1, max_queue=5, aging_seconds=60)
    holder = await scheduler.acquire()
    waiter = asyncio.create_task(scheduler.acquire(Priority.HIGH, "gone"))
    await settle()
    waiter.cancel()
    await settle()
    assert scheduler.queued == 0
    holder.release()
    assert scheduler.idle


async def test_cancel_in_the_same_tick_as_admission_returns_the_slot() -> None:
    # Given a waiter that is admitted, then cancelled before it could run
    scheduler = FairScheduler(slots=1, max_queue=5, aging_seconds=60)
    holder = await scheduler.acquire()
    waiter = asyncio.create_task(scheduler.acquire(user="racer"))
    nxt = asyncio.create_task(scheduler.acquire(user="next"))
    await settle()
    holder.release()  # admits "racer" (sets its future)
    waiter.cancel()  # ... which is cancelled before resuming
    await settle()
    # Then the slot passes on to the next waiter instead of leaking
    assert waiter.cancelled()
    assert nxt.done()
    nxt.result().release()
    assert scheduler.idle


async def test_ticket_release_is_idempotent() -> None:
    scheduler = FairScheduler(slots=1, max_queue=5, aging_seconds=60)
    ticket = await scheduler.acquire()
    ticket.release()
    ticket.release()
    assert scheduler.active == 0 and scheduler.idle


async def test_slot_context_manager_releases_on_error() -> None:
    scheduler = FairScheduler(slots=1, max_queue=5, aging_seconds=60)
    with pytest.raises(RuntimeError):
        async with scheduler.slot(Priority.HIGH, "u"):
            raise RuntimeError("boom")
    assert scheduler.idle


def test_modes_change_slots_and_aging() -> None:
    assert MODE_POLICIES[Mode.LATENCY].slots(4) == 2
    assert MODE_POLICIES[Mode.LATENCY].slots(1) == 1
    assert MODE_POLICIES[Mode.BALANCED].slots(4) == 4
    assert MODE_POLICIES[Mode.THROUGHPUT].slots(4) == 8
    agings = [
        MODE_POLICIES[m].aging_seconds for m in (Mode.LATENCY, Mode.BALANCED, Mode.THROUGHPUT)
    ]
    assert agings == sorted(agings, reverse=True)


def test_priority_parse() -> None:
    assert Priority.parse(" High ") is Priority.HIGH
    with pytest.raises(KeyError):
        Priority.parse("urgent")
