"""Rate-limit counters in Postgres: exact across processes, all-or-none, settled,
expired windows deleted."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from decimal import Decimal
from typing import Any

import psycopg

from spine.storage.api_keys import KeyChanges, create_key, revoke_key, update_key
from spine.storage.db import Connection
from spine.storage.limits import (
    PRINCIPAL_SUBJECT,
    Adjustment,
    CounterRequest,
    admit,
    authenticate_and_admit,
    delete_expired,
    settle,
)

PROCESSES = 10
PER_PROCESS = 5  # 10 processes x 5 connections = 50 concurrent admits
LIMIT = 20


def rpm(subject: str, limit: int | None, *, override: bool = False) -> CounterRequest:
    lim = Decimal(limit) if limit is not None else None
    return CounterRequest(subject, "requests", "minute", Decimal(1), lim, override)


def tpm(subject: str, tokens: int, limit: int) -> CounterRequest:
    return CounterRequest(subject, "tokens", "minute", Decimal(tokens), Decimal(limit))


# A day window: a burst of loaded processes must not straddle a window boundary
# (at a minute's end two windows would each admit up to the limit, as they should).
_BURST_COUNTER = CounterRequest("principal:burst", "requests", "day", Decimal(1), Decimal(LIMIT))


async def _burst(url: str, start_at: float) -> int:
    conns = [
        await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(PER_PROCESS)
    ]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    results = await asyncio.gather(
        *(admit(conn, [_BURST_COUNTER], api_key_id=None) for conn in conns)
    )
    for conn in conns:
        await conn.close()
    return sum(1 for states in results if states[0].admitted)


def _burst_in_process(url: str, start_at: float, queue: multiprocessing.Queue[int]) -> None:
    queue.put(asyncio.run(_burst(url, start_at)))


async def test_fifty_concurrent_admits_across_processes_admit_exactly_the_limit(
    db_url: str, db_conn: Connection
) -> None:
    # Given 10 processes with 5 connections each, all firing at the same instant
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[int] = ctx.Queue()
    start_at = time.time() + 6.0  # spawning and importing take a few seconds
    procs = [
        ctx.Process(target=_burst_in_process, args=(db_url, start_at, queue))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()

    # When all 50 requests hit a limit of 20
    admitted = [await asyncio.to_thread(queue.get, True, 120) for _ in procs]
    for proc in procs:
        proc.join(30)

    # Then exactly 20 are admitted and the counter says 20
    assert sum(admitted) == LIMIT
    row = await (await db_conn.execute("SELECT used FROM rate_counters")).fetchone()
    assert row is not None and row[0] == LIMIT


async def test_refusal_takes_nothing_from_the_other_counters(db_conn: Connection) -> None:
    # Given a request whose token counter has room but whose model counter has not
    counters = [tpm("principal:p", 100, 1000), rpm("model:m", 1)]
    assert all(s.admitted for s in await admit(db_conn, counters, api_key_id=None))

    # When the next one is refused by the model counter
    states = await admit(db_conn, counters, api_key_id=None)

    # Then only the refusing counter comes back, and the tokens were not taken twice
    assert len(states) == 1 and not states[0].admitted
    assert states[0].request.subject == "model:m" and states[0].used == 1
    used = await (
        await db_conn.execute("SELECT used FROM rate_counters WHERE subject = 'principal:p'")
    ).fetchone()
    assert used == (100,)


async def test_token_reservation_is_settled_to_real_usage(db_conn: Connection) -> None:
    # Given 800 tokens reserved against 1000
    [state] = await admit(db_conn, [tpm("principal:t", 800, 1000)], api_key_id=None)
    assert state.used == 800
    # And a second request of 300 does not fit
    [refused] = await admit(db_conn, [tpm("principal:t", 300, 1000)], api_key_id=None)
    assert not refused.admitted and refused.used == 800

    # When the first request turns out to have used 150
    await settle(db_conn, [Adjustment("principal:t", "tokens", state.window_start, Decimal(-650))])

    # Then the 300 fits and the counter holds 450
    [after] = await admit(db_conn, [tpm("principal:t", 300, 1000)], api_key_id=None)
    assert after.admitted and after.used == 450


async def test_unlimited_counters_are_skipped_and_key_overrides_win(db_conn: Connection) -> None:
    # Given a key limited to 2 rpm while the default is unlimited
    _, key = await create_key(db_conn, "k", prefix="sk-spine-")
    assert await update_key(db_conn, key.id, KeyChanges(limits={"rpm": 2}))

    # When three requests arrive, and an unlimited subject also counts
    results = [
        await admit(db_conn, [rpm("principal:k", None, override=True)], api_key_id=key.id)
        for _ in range(3)
    ]
    unlimited = await admit(db_conn, [rpm("principal:free", None)], api_key_id=None)

    # Then the key's limit applies and unlimited counters write nothing
    assert [r[0].admitted for r in results] == [True, True, False]
    assert results[0][0].limit == 2
    assert unlimited == []


async def test_expired_windows_are_deleted_in_batches(db_conn: Connection) -> None:
    # Given 5 windows that ended two hours ago and a current one
    await db_conn.execute(
        "INSERT INTO rate_counters (subject, metric, window_start, window_end, used) "
        "SELECT 'principal:old' || g, 'requests', now() - interval '3 hours', "
        "now() - interval '2 hours', 1 FROM generate_series(1, 5) g"
    )
    await admit(db_conn, [rpm("principal:new", 5)], api_key_id=None)

    # When a batch of 3, then the rest, are deleted
    first = await delete_expired(db_conn, batch=3)
    second = await delete_expired(db_conn, batch=3)

    # Then only the current window is left
    assert (first, second) == (3, 2)
    rows = await (await db_conn.execute("SELECT subject FROM rate_counters")).fetchall()
    assert rows == [("principal:new",)]


async def test_admission_can_clean_up_in_the_same_statement(db_conn: Connection) -> None:
    await db_conn.execute(
        "INSERT INTO rate_counters (subject, metric, window_start, window_end, used) "
        "VALUES ('principal:old', 'requests', now() - interval '3 hours', "
        "now() - interval '2 hours', 1)"
    )
    await admit(db_conn, [rpm("principal:new", 5)], api_key_id=None, cleanup=True)
    rows = await (await db_conn.execute("SELECT subject FROM rate_counters")).fetchall()
    assert rows == [("principal:new",)]


class _CountingCursor(psycopg.AsyncCursor[Any]):
    """Counts statements sent: each `execute` here is one round trip (autocommit)."""

    executes = 0

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        type(self).executes += 1
        return await super().execute(*args, **kwargs)


async def test_key_lookup_and_admission_are_one_round_trip(db_url: str) -> None:
    # Given a key owned by "alice", limited to 2 rpm by override, and a model limit
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as setup:
        plaintext, key = await create_key(setup, "k", prefix="sk-spine-", principal="alice")
        assert await update_key(setup, key.id, KeyChanges(limits={"rpm": 2}))
    counters = [
        rpm(PRINCIPAL_SUBJECT, None, override=True),
        rpm("model:m", 10),
    ]

    # When three requests authenticate and admit, on a connection that counts statements
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, cursor_factory=_CountingCursor
    ) as conn:
        results = [await authenticate_and_admit(conn, plaintext, counters) for _ in range(3)]

    # Then each took one statement, named the key, and counted under its owner
    assert _CountingCursor.executes == 3
    assert all(row is not None and row.id == key.id for row, _ in results)
    first_row, first_states = results[0]
    assert first_row is not None and first_row.rpm == 2
    assert {s.request.subject for s in first_states} == {"model:m", "principal:0::alice"}
    assert [all(s.admitted for s in states) for _, states in results] == [True, True, False]
    # The refusal is the key's counter and took nothing from the model's
    [refused] = results[2][1]
    assert refused.request.subject == "principal:0::alice" and refused.limit == 2
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as check:
        used = await (
            await check.execute("SELECT subject, used FROM rate_counters ORDER BY subject")
        ).fetchall()
    assert used == [("model:m", 2), ("principal:0::alice", 2)]


async def test_an_unknown_or_revoked_key_takes_nothing(db_conn: Connection) -> None:
    plaintext, _ = await create_key(db_conn, "k", prefix="sk-spine-")
    await revoke_key(db_conn, plaintext)
    counters = [rpm(PRINCIPAL_SUBJECT, 5, override=True), rpm("model:m", 5)]

    revoked = await authenticate_and_admit(db_conn, plaintext, counters)
    unknown = await authenticate_and_admit(db_conn, "sk-spine-" + "x" * 43, counters)

    assert revoked == (None, []) and unknown == (None, [])
    rows = await (await db_conn.execute("SELECT count(*) FROM rate_counters")).fetchone()
    assert rows == (0,)


async def test_a_key_without_limits_admits_with_no_counter(db_conn: Connection) -> None:
    plaintext, key = await create_key(db_conn, "k", prefix="sk-spine-")
    row, states = await authenticate_and_admit(
        db_conn, plaintext, [rpm(PRINCIPAL_SUBJECT, None, override=True)]
    )
    assert row is not None and row.id == key.id and states == []
