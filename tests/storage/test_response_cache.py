"""The response cache table: scoped lookups, TTLs on the database clock, upserts and
batched expiry."""

from __future__ import annotations

import hashlib

import pytest

from spine.storage.db import Connection
from spine.storage.response_cache import CacheEntry, delete_expired, lookup, store


def key(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def entry(name: str = "a", *, scope: str = "tenant:acme", content: str = "hi") -> CacheEntry:
    return CacheEntry(
        key=key(name),
        scope=scope,
        endpoint="chat.completions",
        model_id="gpt-test",
        provider="openai",
        deployment="default",
        request_id=f"req-{name}",
        response={"id": "chatcmpl-1", "choices": [{"message": {"content": content}}]},
    )


async def age(conn: Connection, seconds: int) -> None:
    await conn.execute(
        "UPDATE response_cache SET created_at = created_at - make_interval(secs => %s),"
        " expires_at = expires_at - make_interval(secs => %s)",
        (seconds, seconds),
    )


async def test_store_then_lookup_round_trip(db_conn: Connection) -> None:
    await store(db_conn, entry(), ttl=300)
    row = await lookup(db_conn, key("a"), "tenant:acme", ttl=300)
    assert row is not None
    assert (row.model_id, row.provider, row.deployment, row.request_id) == (
        "gpt-test",
        "openai",
        "default",
        "req-a",
    )
    assert row.response["choices"][0]["message"]["content"] == "hi"


async def test_lookup_is_scoped(db_conn: Connection) -> None:
    # Even a key that matched (it cannot: the scope is hashed into it) stays in its scope
    await store(db_conn, entry(scope="tenant:acme"), ttl=300)
    assert await lookup(db_conn, key("a"), "tenant:globex", ttl=300) is None
    assert await lookup(db_conn, key("b"), "tenant:acme", ttl=300) is None


async def test_expired_rows_are_never_served(db_conn: Connection) -> None:
    await store(db_conn, entry(), ttl=60)
    await age(db_conn, 61)
    # The writer's TTL has passed: not served, even to a reader allowing longer
    assert await lookup(db_conn, key("a"), "tenant:acme", ttl=3600) is None


async def test_reader_ttl_shorter_than_the_writers_wins(db_conn: Connection) -> None:
    await store(db_conn, entry(), ttl=3600)
    await age(db_conn, 120)
    assert await lookup(db_conn, key("a"), "tenant:acme", ttl=60) is None
    assert await lookup(db_conn, key("a"), "tenant:acme", ttl=300) is not None


async def test_store_replaces_the_row_and_restarts_its_ttl(db_conn: Connection) -> None:
    await store(db_conn, entry(content="old"), ttl=60)
    await age(db_conn, 50)
    await store(db_conn, entry(content="new"), ttl=60)
    await age(db_conn, 20)  # 70 s after the first write, 20 s after the second
    row = await lookup(db_conn, key("a"), "tenant:acme", ttl=60)
    assert row is not None and row.response["choices"][0]["message"]["content"] == "new"
    cur = await db_conn.execute("SELECT count(*) FROM response_cache")
    assert await cur.fetchone() == (1,)


async def test_delete_expired_removes_only_expired_rows_in_batches(db_conn: Connection) -> None:
    for i in range(7):
        await store(db_conn, entry(f"old-{i}"), ttl=10)
    await age(db_conn, 11)
    for i in range(3):
        await store(db_conn, entry(f"live-{i}"), ttl=300)
    # batch 2: four statements for seven rows, each its own short transaction
    assert await delete_expired(db_conn, batch=2) == 7
    cur = await db_conn.execute("SELECT request_id FROM response_cache ORDER BY request_id")
    assert [r[0] for r in await cur.fetchall()] == ["req-live-0", "req-live-1", "req-live-2"]
    assert await delete_expired(db_conn, batch=2) == 0


async def test_delete_expired_refuses_an_empty_batch(db_conn: Connection) -> None:
    with pytest.raises(ValueError, match="batch"):
        await delete_expired(db_conn, batch=0)


async def test_key_must_be_a_sha256_digest(db_conn: Connection) -> None:
    import psycopg

    bad = CacheEntry(**{**entry().__dict__, "key": b"short"})
    with pytest.raises(psycopg.errors.CheckViolation):
        await store(db_conn, bad, ttl=60)
