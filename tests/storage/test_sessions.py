"""Session storage: one-statement turns, scoping in SQL, ordering, cascade, plans."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from spine.storage import db
from spine.storage import sessions as store
from spine.storage.owner import Owner
from spine.storage.sessions import NewMessage

ALICE = Owner(tenant="acme", subject="alice")
BOB = Owner(tenant="acme", subject="bob")
ALICE_ELSEWHERE = Owner(tenant="other", subject="alice")
INJECTION = "'; DROP TABLE chat_messages; -- \" OR 1=1 /* $1 %s %(x)s \\x00 */"


def user(text: str, tokens: int | None = 3) -> NewMessage:
    return NewMessage(role="user", content=text, tokens=tokens)


def reply(text: str, tokens: int | None = 5) -> NewMessage:
    return NewMessage(role="assistant", content=text, tokens=tokens)


async def new_session(conn: db.Connection, owner: Owner = ALICE) -> uuid.UUID:
    row = await store.create_session(conn, owner, title="t", model="gpt-test", system_prompt=None)
    return row.id


async def test_turn_is_stored_in_order_with_request_id(db_conn: db.Connection) -> None:
    # Given a session
    sid = await new_session(db_conn)
    # When two turns are appended
    first = await store.append_messages(
        db_conn, ALICE, sid, [user("hi"), reply("hello")], request_id="req_1"
    )
    second = await store.append_messages(
        db_conn, ALICE, sid, [user("again"), reply("sure")], request_id="req_2"
    )
    # Then positions are consecutive and each message knows its request
    assert [(m.seq, m.role, m.content, m.request_id) for m in first + second] == [
        (0, "user", "hi", "req_1"),
        (1, "assistant", "hello", "req_1"),
        (2, "user", "again", "req_2"),
        (3, "assistant", "sure", "req_2"),
    ]
    loaded = await store.load_session(db_conn, ALICE, sid, history=100)
    assert loaded is not None and loaded.session.message_count == 4
    assert [m.content for m in loaded.history] == ["hi", "hello", "again", "sure"]
    assert loaded.older_turns == 0


async def test_a_failure_between_user_turn_and_reply_stores_nothing(db_conn: db.Connection) -> None:
    # Given a session holding one turn
    sid = await new_session(db_conn)
    await store.append_messages(db_conn, ALICE, sid, [user("kept"), reply("ok")], request_id="r1")
    # When the reply row of the next turn fails (a CHECK violation), after the user row
    # was written by the same statement
    with pytest.raises(psycopg.errors.CheckViolation):
        await store.append_messages(
            db_conn, ALICE, sid, [user("lost"), reply("bad", tokens=-1)], request_id="r2"
        )
    # Then neither message of that turn is stored, the counter did not move, and the
    # earlier turn is intact
    loaded = await store.load_session(db_conn, ALICE, sid, history=100)
    assert loaded is not None
    assert [m.content for m in loaded.history] == ["kept", "ok"]
    assert loaded.session.message_count == 2
    # And the next turn gets the next free positions
    rows = await store.append_messages(
        db_conn, ALICE, sid, [user("next"), reply("fine")], request_id="r3"
    )
    assert [m.seq for m in rows] == [2, 3]


async def test_load_is_one_round_trip_and_returns_the_newest_messages(
    db_conn: db.Connection,
) -> None:
    sid = await new_session(db_conn)
    for i in range(5):
        await store.append_messages(
            db_conn, ALICE, sid, [user(f"u{i}"), reply(f"a{i}")], request_id=f"r{i}"
        )
    # When loading at most 3 messages
    loaded = await store.load_session(db_conn, ALICE, sid, history=3)
    # Then they are the newest three, oldest first, and the turns before are counted
    assert loaded is not None
    assert [m.content for m in loaded.history] == ["a3", "u4", "a4"]
    # u0..u3 are older than the window (u3's reply a3 is loaded without it).
    assert loaded.older_turns == 4


async def test_every_statement_is_scoped_by_tenant_and_owner(db_conn: db.Connection) -> None:
    sid = await new_session(db_conn)
    await store.append_messages(db_conn, ALICE, sid, [user("secret"), reply("x")], request_id="r")
    for other in (BOB, ALICE_ELSEWHERE):
        assert await store.get_session(db_conn, other, sid) is None
        assert await store.load_session(db_conn, other, sid, history=10) is None
        assert await store.list_messages(db_conn, other, sid, limit=10) is None
        assert await store.list_sessions(db_conn, other, limit=10) == []
        assert await store.update_session(db_conn, other, sid, {"title": "stolen"}) is None
        assert await store.append_messages(db_conn, other, sid, [user("x")], request_id="r") == []
        assert await store.delete_session(db_conn, other, sid) is False
    # Alice's session is untouched
    page = await store.list_messages(db_conn, ALICE, sid, limit=10)
    assert page is not None and [m.content for m in page.messages] == ["secret", "x"]
    row = await store.get_session(db_conn, ALICE, sid)
    assert row is not None and row.title == "t" and row.message_count == 2


async def test_text_is_stored_verbatim(db_conn: db.Connection) -> None:
    row = await store.create_session(
        db_conn, ALICE, title=INJECTION, model="gpt-test", system_prompt=INJECTION
    )
    await store.append_messages(db_conn, ALICE, row.id, [user(INJECTION)], request_id=INJECTION)
    loaded = await store.load_session(db_conn, ALICE, row.id, history=10)
    assert loaded is not None
    assert loaded.session.title == loaded.session.system_prompt == INJECTION
    assert loaded.history[0].content == INJECTION


async def test_update_writes_only_the_given_fields(db_conn: db.Connection) -> None:
    row = await store.create_session(
        db_conn, ALICE, title="t", model="gpt-test", system_prompt="be brief"
    )
    titled = await store.update_session(db_conn, ALICE, row.id, {"title": "new"})
    assert titled is not None
    assert (titled.title, titled.model, titled.system_prompt) == ("new", "gpt-test", "be brief")
    cleared = await store.update_session(db_conn, ALICE, row.id, {"system_prompt": None})
    assert cleared is not None and cleared.system_prompt is None and cleared.title == "new"


async def test_delete_cascades_to_messages(db_conn: db.Connection) -> None:
    sid = await new_session(db_conn)
    await store.append_messages(db_conn, ALICE, sid, [user("a"), reply("b")], request_id="r")
    assert await store.delete_session(db_conn, ALICE, sid) is True
    cur = await db_conn.execute("SELECT count(*) FROM chat_messages WHERE session_id = %s", (sid,))
    assert (await cur.fetchone()) == (0,)


async def test_transcript_pages_oldest_first_with_a_cursor(db_conn: db.Connection) -> None:
    sid = await new_session(db_conn)
    for i in range(3):
        await store.append_messages(
            db_conn, ALICE, sid, [user(f"u{i}"), reply(f"a{i}")], request_id=f"r{i}"
        )
    first = await store.list_messages(db_conn, ALICE, sid, limit=4)
    assert first is not None and [m.content for m in first.messages] == ["u0", "a0", "u1", "a1"]
    rest = await store.list_messages(db_conn, ALICE, sid, limit=4, after=first.messages[-1].id)
    assert rest is not None and rest.cursor_found
    assert [m.content for m in rest.messages] == ["u2", "a2"]
    # A cursor from another session is not found
    other = await new_session(db_conn)
    stray = await store.list_messages(db_conn, ALICE, other, limit=4, after=first.messages[0].id)
    assert stray is not None and not stray.cursor_found
    # An empty session lists nothing (but exists)
    empty = await store.list_messages(db_conn, ALICE, other, limit=4)
    assert empty is not None and empty.messages == []


async def test_sessions_list_newest_first_by_keyset(db_conn: db.Connection) -> None:
    ids = [await new_session(db_conn) for _ in range(5)]
    await new_session(db_conn, BOB)
    first = await store.list_sessions(db_conn, ALICE, limit=2)
    rest = await store.list_sessions(db_conn, ALICE, limit=10, after=first[-1].id)
    assert [r.id for r in first + rest] == ids[::-1]


async def test_concurrent_turns_get_consecutive_positions(
    db_conn: db.Connection, db_url: str
) -> None:
    # Given one session and eight writers on eight connections (eight Lambda instances)
    sid = await new_session(db_conn)
    conns = [await db.connect(db_url, connect_timeout=5) for _ in range(8)]
    try:
        await asyncio.gather(
            *(
                store.append_messages(
                    conn, ALICE, sid, [user(f"u{i}"), reply(f"a{i}")], request_id=f"r{i}"
                )
                for i, conn in enumerate(conns)
            )
        )
    finally:
        for conn in conns:
            await conn.close()
    # Then all 16 messages are stored, positions 0..15, each turn's two adjacent
    page = await store.list_messages(db_conn, ALICE, sid, limit=100)
    assert page is not None
    assert [m.seq for m in page.messages] == list(range(16))
    for u, a in zip(page.messages[::2], page.messages[1::2], strict=True):
        assert (u.role, a.role, u.request_id) == ("user", "assistant", a.request_id)


async def test_queries_use_the_indexes(db_conn: db.Connection) -> None:
    # Given enough rows that the planner prefers an index when it has one
    await db_conn.execute(
        "INSERT INTO chat_sessions (tenant, owner, model) "
        "SELECT 't' || (i % 50), 'u' || i, 'm' FROM generate_series(1, 20000) AS i"
    )
    sid = await new_session(db_conn)
    await db_conn.execute(
        "INSERT INTO chat_messages (session_id, seq, role, content, request_id) "
        "SELECT %s, i, 'user', 'x', 'r' FROM generate_series(0, 19999) AS i",
        (sid,),
    )
    await db_conn.execute("UPDATE chat_sessions SET message_count = 20000 WHERE id = %s", (sid,))
    await db_conn.execute("ANALYZE chat_sessions")
    await db_conn.execute("ANALYZE chat_messages")
    plans = {
        "list": await _plan(
            db_conn,
            "SELECT id FROM chat_sessions WHERE tenant = 't1' AND owner = 'u1' "
            "ORDER BY created_at DESC, id DESC LIMIT 20",
        ),
        "history": await _plan(
            db_conn,
            f"SELECT * FROM chat_messages WHERE session_id = '{sid}' ORDER BY seq DESC LIMIT 50",
        ),
    }
    assert "chat_sessions_scope_created_idx" in plans["list"], plans["list"]
    assert "Sort" not in plans["list"]
    assert "chat_messages_pkey" in plans["history"], plans["history"]
    assert "Seq Scan" not in plans["history"]


async def _plan(conn: db.Connection, query: str) -> str:
    cur = await conn.execute("EXPLAIN " + query)
    return "\n".join(str(row[0]) for row in await cur.fetchall())
