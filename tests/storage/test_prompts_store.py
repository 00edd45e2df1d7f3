"""Prompt storage: concurrent updates, scoping in SQL, label integrity."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from spine.errors import ConflictError
from spine.schemas.prompt_content import PromptContent, Variable
from spine.storage import db
from spine.storage import prompts as store
from spine.storage.owner import Owner

ALICE = Owner(tenant="acme", subject="alice")


def content(text: str) -> PromptContent:
    return PromptContent(text, (), None, {})


async def test_concurrent_updates_get_consecutive_versions(
    db_conn: db.Connection, db_url: str
) -> None:
    # Given a prompt, and eight writers on eight connections (eight Lambda instances)
    prompt, _ = await store.create_prompt(
        db_conn, ALICE, slug="p", name="p", description="", content=content("v1")
    )
    conns = [await db.connect(db_url, connect_timeout=5) for _ in range(8)]
    try:
        # When each appends different content at the same time
        results = await asyncio.gather(
            *(
                store.add_version_if_changed(conn, prompt, content(f"w{i}"), created_by="alice")
                for i, conn in enumerate(conns)
            )
        )
    finally:
        for conn in conns:
            await conn.close()
    # Then every write made a version, numbered 2..9 with no gap and no duplicate
    assert all(created for _, _, created in results)
    assert sorted(version.version for _, version, _ in results) == list(range(2, 10))
    fresh = await store.get_prompt(db_conn, ALICE, prompt_id=prompt.id)
    assert fresh is not None and fresh.latest_version == 9


async def test_lookups_are_scoped_by_tenant_and_owner(db_conn: db.Connection) -> None:
    prompt, _ = await store.create_prompt(
        db_conn, ALICE, slug="p", name="p", description="", content=content("x")
    )
    for other in (Owner("acme", "bob"), Owner("", "alice"), Owner("other", "alice")):
        assert await store.get_prompt(db_conn, other, prompt_id=prompt.id) is None
        assert await store.get_prompt(db_conn, other, slug="p") is None
        assert await store.list_prompts(db_conn, other, limit=10) == []
        assert await store.delete_prompt(db_conn, other, prompt.id) is False
        assert await store.update_metadata(db_conn, other, prompt.id, name="x") is None
    assert await store.get_prompt(db_conn, ALICE, slug="p") == prompt


async def test_slug_taken_and_labels_need_an_existing_version(db_conn: db.Connection) -> None:
    prompt, _ = await store.create_prompt(
        db_conn, ALICE, slug="p", name="p", description="", content=content("x")
    )
    other, _ = await store.create_prompt(
        db_conn, ALICE, slug="q", name="q", description="", content=content("y")
    )
    with pytest.raises(ConflictError):
        await store.create_prompt(
            db_conn, ALICE, slug="p", name="p", description="", content=content("z")
        )
    with pytest.raises(ConflictError):
        await store.update_metadata(db_conn, ALICE, other.id, slug="p")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await db_conn.execute(
            "INSERT INTO prompt_labels (prompt_id, label, version, updated_by)"
            " VALUES (%s, 'prod', 2, 'alice')",
            (prompt.id,),
        )


async def test_same_content_appends_nothing(db_conn: db.Connection) -> None:
    text = PromptContent("{{a}}", (Variable("a"),), "m", {"temperature": 0.1})
    prompt, first = await store.create_prompt(
        db_conn, ALICE, slug="p", name="p", description="", content=text
    )
    same = PromptContent("{{a}}", (Variable("a"),), "m", {"temperature": 0.1})
    _, latest, created = await store.add_version_if_changed(
        db_conn, prompt, same, created_by="alice"
    )
    assert created is False and latest == first
    assert latest.content() == text
