"""Connection management: per-loop cache, reconnects, clean 503s when the DB is down."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from spine.errors import ServiceUnavailableError
from spine.storage import db


async def _backend_pid(conn: db.Connection) -> int:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_one_cached_autocommit_connection_per_loop(db_url: str) -> None:
    first = await db.connection()
    second = await db.connection()

    assert first is second
    assert first.autocommit
    assert first.prepare_threshold is None  # safe behind transaction poolers


def test_each_thread_loop_gets_its_own_connection(db_url: str) -> None:
    # Given two threads, each running its own event loop (the emulator's model)
    pids: list[int] = []
    barrier = threading.Barrier(2)

    def container() -> None:
        async def main() -> int:
            conn = await db.connection()
            barrier.wait(timeout=10)  # both connected at the same time
            again = await db.connection()
            assert again is conn
            return await _backend_pid(conn)

        pids.append(asyncio.run(main()))

    threads = [threading.Thread(target=container) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then each had its own server backend
    assert len(pids) == 2
    assert pids[0] != pids[1]


async def test_closed_connection_is_replaced(db_url: str) -> None:
    conn = await db.connection()
    await conn.close()

    fresh = await db.connection()

    assert fresh is not conn
    assert not fresh.closed


async def test_run_reconnects_once_after_the_server_drops_the_connection(
    db_url: str, db_conn: db.Connection
) -> None:
    # Given the cached connection killed server-side (restart, proxy timeout)
    conn = await db.connection()
    old_pid = await _backend_pid(conn)
    await db_conn.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    await asyncio.sleep(0.05)

    # When an idempotent operation runs through db.run
    new_pid = await db.run(_backend_pid)

    # Then it transparently ran on a new connection
    assert new_pid != old_pid
    assert conn.broken


async def test_idle_connection_is_checked_before_reuse(
    db_url: str, db_conn: db.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a connection dropped by the server while the container was idle
    conn = await db.connection()
    await db_conn.execute("SELECT pg_terminate_backend(%s)", (await _backend_pid(conn),))
    await asyncio.sleep(0.05)
    monkeypatch.setattr(db, "IDLE_CHECK_SECONDS", 0.0)  # "idle long enough"

    # When the next request asks for the connection, it gets a working one
    fresh = await db.connection()
    assert fresh is not conn
    assert await _backend_pid(fresh) > 0


async def test_transaction_commits_or_rolls_back(db_url: str, db_conn: db.Connection) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO api_keys (name, prefix, key_hash) VALUES ('a', 'p', %s)", ("a" * 64,)
        )

    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO api_keys (name, prefix, key_hash) VALUES ('b', 'p', %s)", ("b" * 64,)
            )
            raise RuntimeError("boom")

    cur = await db_conn.execute("SELECT name FROM api_keys ORDER BY name")
    assert await cur.fetchall() == [("a",)]


async def test_ping_succeeds_against_the_database(db_url: str) -> None:
    await db.ping()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_database_down_is_a_quick_clear_503(closed_port: int) -> None:
    db.configure(f"postgresql://spine:secret-pw@127.0.0.1:{closed_port}/spine", connect_timeout=2)
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as caught:
            await db.ping()
        elapsed = time.monotonic() - started
    finally:
        db.configure(None)

    error = caught.value
    assert elapsed < 2
    assert error.status_code == 503
    assert error.message.startswith("database unavailable: ")
    assert "refused" in error.message.lower()
    assert "secret-pw" not in error.message
    assert "\n" not in error.message


async def test_hung_database_times_out_within_connect_timeout(silent_port: int) -> None:
    db.configure(f"postgresql://spine@127.0.0.1:{silent_port}/spine", connect_timeout=2)
    try:
        started = time.monotonic()
        with pytest.raises(
            ServiceUnavailableError, match="database unavailable: connection timed out"
        ):
            await db.connection()
        elapsed = time.monotonic() - started
    finally:
        db.configure(None)
    assert 1.5 < elapsed < 4.5


async def test_invalid_url_does_not_echo_the_password() -> None:
    with pytest.raises(ServiceUnavailableError) as caught:
        await db.connect("postgresql://u:hunter2@[bad", connect_timeout=2)
    assert "hunter2" not in caught.value.message
    assert isinstance(caught.value.__cause__, psycopg.Error)
