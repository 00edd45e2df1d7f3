"""Batch lines in Postgres: a group's lines claimed and finished in one statement
each, a line run by one delivery only, and the batch's last lines seen by exactly one
finisher however their groups race."""

from __future__ import annotations

import asyncio

from spine.storage import batches as store
from spine.storage import db
from spine.storage.batches import LineResult
from spine.storage.owner import Owner
from tests.fixtures.batches import insert_batch

OWNER = Owner(tenant="acme", subject="alice")


async def running_batch(conn: db.Connection, lines: int) -> str:
    batch_id = (await insert_batch(conn, OWNER, total=lines)).id
    await store.insert_lines(conn, batch_id, [(n, f"req-{n}") for n in range(1, lines + 1)])
    assert await store.start(conn, batch_id)
    return batch_id


async def test_a_claimed_line_is_busy_to_others_and_skipped_once_done(
    db_conn: db.Connection,
) -> None:
    batch_id = await running_batch(db_conn, 4)
    # When lines 1-3 (and one that does not exist) are claimed
    first = await store.claim_lines(db_conn, batch_id, [1, 2, 3, 99], lease_seconds=60)
    # Then each is this delivery's to run, at its first attempt; the unknown one is left out
    assert first == {1: ("run", 1), 2: ("run", 1), 3: ("run", 1)}
    # And another delivery finds them busy, and may run line 4
    second = await store.claim_lines(db_conn, batch_id, [2, 3, 4], lease_seconds=60)
    assert second == {2: ("busy", 0), 3: ("busy", 0), 4: ("run", 1)}
    # When line 1 finishes, line 2 is given back
    await store.finish_lines(db_conn, batch_id, [LineResult(1, True, '{"ok":1}')])
    await store.release_lines(db_conn, batch_id, [2])
    # Then line 1 is skipped from now on, line 2 runs again at its second attempt
    again = await store.claim_lines(db_conn, batch_id, [1, 2], lease_seconds=60)
    assert again == {1: ("skip", 0), 2: ("run", 2)}


async def test_a_line_whose_lease_ran_out_is_taken_over_and_counted_once(
    db_conn: db.Connection,
) -> None:
    batch_id = await running_batch(db_conn, 2)
    # Given line 1 claimed under a lease that has run out (its delivery died)
    assert await store.claim_lines(db_conn, batch_id, [1], lease_seconds=0) == {1: ("run", 1)}
    await asyncio.sleep(0.01)
    # Then another delivery takes it over
    assert await store.claim_lines(db_conn, batch_id, [1], lease_seconds=60) == {1: ("run", 2)}
    # When both deliveries report it
    await store.finish_lines(db_conn, batch_id, [LineResult(1, True, "first")])
    await store.finish_lines(db_conn, batch_id, [LineResult(1, False, "second")])
    # Then the first report stands, counted once
    batch = await store.get_batch(db_conn, None, batch_id)
    assert batch is not None and (batch.completed, batch.failed) == (1, 0)
    results = [r async for r in store.result_lines(db_conn, batch_id, ok=True)]
    assert [(line, result) for line, _, _, result in results] == [(1, "first")]


async def test_racing_groups_see_the_batch_end_exactly_once(db_url: str) -> None:
    # Given batches of 60 lines, each finished by three groups at once on three
    # connections (three containers)
    conns = [await db.connect(db_url, connect_timeout=5) for _ in range(3)]
    try:
        for _ in range(15):
            batch_id = await running_batch(conns[0], 60)
            groups = [list(range(start, start + 20)) for start in (1, 21, 41)]

            async def run_group(conn: db.Connection, lines: list[int], batch_id: str) -> bool:
                claims = await store.claim_lines(conn, batch_id, lines, lease_seconds=60)
                assert all(verdict == "run" for verdict, _ in claims.values())
                results = [LineResult(n, n % 7 != 0, f"line {n}") for n in lines]
                return await store.finish_lines(conn, batch_id, results)

            lasts = await asyncio.gather(
                *(run_group(c, g, batch_id) for c, g in zip(conns, groups, strict=True))
            )
            # Then exactly one group saw the batch's last lines, and it is finalizing
            assert sorted(lasts) == [False, False, True]
            batch = await store.get_batch(conns[0], None, batch_id)
            assert batch is not None and batch.status == "finalizing"
            assert (batch.completed, batch.failed) == (52, 8)
    finally:
        for conn in conns:
            await conn.close()
