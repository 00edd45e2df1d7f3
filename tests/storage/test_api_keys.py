"""API keys: shown once, stored hashed, revocable."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from spine.errors import InvalidRequestError
from spine.storage.api_keys import (
    authenticate,
    create_key,
    generate_key,
    hash_key,
    list_keys,
    revoke_key,
)
from spine.storage.db import Connection

PREFIX = "sk-spine-"


def test_generated_keys_are_long_random_base62() -> None:
    keys = {generate_key(PREFIX) for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"sk-spine-[0-9A-Za-z]{43}", key)


async def test_create_then_authenticate(db_conn: Connection) -> None:
    # Given a new key
    plaintext, row = await create_key(
        db_conn, "ci", prefix=PREFIX, principal="svc-ci", scopes=["chat", "models"], tier="gold"
    )

    # When it is presented
    found = await authenticate(db_conn, plaintext)

    # Then it authenticates as the row that was created
    assert found is not None
    assert found.id == row.id
    assert (found.name, found.principal, found.scopes, found.tier) == (
        "ci",
        "svc-ci",
        ["chat", "models"],
        "gold",
    )
    assert row.prefix == plaintext[: len(PREFIX) + 6]
    assert row.display_prefix.endswith("…")


async def test_wrong_and_revoked_keys_fail(db_conn: Connection) -> None:
    plaintext, row = await create_key(db_conn, "k", prefix=PREFIX)

    assert (
        await authenticate(db_conn, plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    )
    assert await authenticate(db_conn, generate_key(PREFIX)) is None
    assert await authenticate(db_conn, "") is None

    revoked = await revoke_key(db_conn, str(row.id))
    assert revoked is not None and revoked.revoked_at is not None
    assert await authenticate(db_conn, plaintext) is None


async def test_expired_key_fails(db_conn: Connection) -> None:
    plaintext, _ = await create_key(
        db_conn, "old", prefix=PREFIX, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert await authenticate(db_conn, plaintext) is None


async def test_only_the_hash_is_stored(db_conn: Connection) -> None:
    plaintext, row = await create_key(db_conn, "secret-check", prefix=PREFIX)
    secret_part = plaintext[len(PREFIX) :]

    # Every column of every row, as text: neither the key nor its secret part appears
    cur = await db_conn.execute("SELECT t::text FROM api_keys t")
    dump = " ".join(r[0] for r in await cur.fetchall())
    assert plaintext not in dump
    assert secret_part not in dump
    assert secret_part[6:12] not in dump  # not even a piece past the listed prefix
    cur = await db_conn.execute("SELECT key_hash FROM api_keys WHERE id = %s", (row.id,))
    assert await cur.fetchone() == (hash_key(plaintext),)


async def test_last_used_is_set_on_use_and_not_rewritten_every_request(
    db_conn: Connection,
) -> None:
    plaintext, row = await create_key(db_conn, "k", prefix=PREFIX)
    assert row.last_used_at is None

    await authenticate(db_conn, plaintext)
    cur = await db_conn.execute("SELECT last_used_at FROM api_keys WHERE id = %s", (row.id,))
    first = (await cur.fetchone() or [None])[0]
    assert first is not None

    await authenticate(db_conn, plaintext)
    cur = await db_conn.execute("SELECT last_used_at FROM api_keys WHERE id = %s", (row.id,))
    assert (await cur.fetchone() or [None])[0] == first


async def test_list_keys_shows_revoked_and_filters(db_conn: Connection) -> None:
    _, a = await create_key(db_conn, "a", prefix=PREFIX)
    _, b = await create_key(db_conn, "b", prefix=PREFIX)
    await revoke_key(db_conn, str(a.id))

    everything = await list_keys(db_conn)
    active = await list_keys(db_conn, include_revoked=False)

    assert [k.name for k in everything] == ["a", "b"]
    assert everything[0].revoked_at is not None
    assert [k.id for k in active] == [b.id]


async def test_revoke_by_prefix_full_key_and_unknown(db_conn: Connection) -> None:
    _, row1 = await create_key(db_conn, "one", prefix=PREFIX)
    key2, row2 = await create_key(db_conn, "two", prefix=PREFIX)

    by_prefix = await revoke_key(db_conn, row1.display_prefix)
    by_key = await revoke_key(db_conn, key2)

    assert by_prefix is not None and by_prefix.id == row1.id
    assert by_key is not None and by_key.id == row2.id
    assert await revoke_key(db_conn, str(uuid.uuid4())) is None
    assert await revoke_key(db_conn, "sk-spine-nope") is None


async def test_revoke_twice_keeps_first_time(db_conn: Connection) -> None:
    _, row = await create_key(db_conn, "k", prefix=PREFIX)
    first = await revoke_key(db_conn, str(row.id))
    second = await revoke_key(db_conn, str(row.id))
    assert first is not None and second is not None
    assert second.revoked_at == first.revoked_at


async def test_ambiguous_prefix_revokes_nothing(db_conn: Connection) -> None:
    await create_key(db_conn, "a", prefix=PREFIX)
    await create_key(db_conn, "b", prefix=PREFIX)
    await db_conn.execute("UPDATE api_keys SET prefix = 'sk-spine-same'")

    with pytest.raises(InvalidRequestError, match="matches 2 keys"):
        await revoke_key(db_conn, "sk-spine-same")

    assert [k.revoked_at for k in await list_keys(db_conn)] == [None, None]
