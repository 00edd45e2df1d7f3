"""Migrations: from scratch, idempotent, safe when several processes race."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from spine.storage.migrate import (
    _ADVISORY_LOCK_KEY,
    MigrationError,
    apply_migrations,
    load_migrations,
)

SPINE = str(Path(sys.executable).with_name("spine"))


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in rows}


def _history(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        return [(row[0], row[1]) for row in rows]


def test_shipped_migrations_are_numbered_in_order() -> None:
    migrations = load_migrations()
    assert migrations[0].label == "0001_initial"
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})


def test_apply_from_scratch_creates_schema_then_is_idempotent(empty_db_url: str) -> None:
    # Given an empty database
    assert _tables(empty_db_url) == set()

    # When migrations are applied twice
    first = apply_migrations(empty_db_url)
    second = apply_migrations(empty_db_url)

    # Then the first run applies every file, records it, and the second does nothing
    assert [m.label for m in first] == [m.label for m in load_migrations()]
    assert second == []
    assert {"api_keys", "usage_events", "schema_migrations"} <= _tables(empty_db_url)
    assert _history(empty_db_url) == [(m.version, m.name) for m in load_migrations()]


def test_edited_migration_is_refused(empty_db_url: str) -> None:
    apply_migrations(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = '0001'")

    with pytest.raises(MigrationError, match="0001_initial was edited"):
        apply_migrations(empty_db_url)


def test_concurrent_migrate_from_two_processes(empty_db_url: str) -> None:
    # Given the migration lock held, so both processes are sure to contend for it
    env = {**os.environ, "DATABASE_URL": empty_db_url}
    with psycopg.connect(empty_db_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
        procs = [
            subprocess.Popen(
                [SPINE, "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(2)
        ]
        _wait_for_lock_waiters(empty_db_url, 2)
        holder.rollback()  # release: both now race for the same pending migration

    # When both finish
    outputs = [proc.communicate(timeout=60) for proc in procs]

    # Then both succeed and each migration was applied exactly once
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    applied_lines = b"".join(out for out, _ in outputs).decode().count("applied 0001_initial")
    assert applied_lines == 1
    assert _history(empty_db_url) == [(m.version, m.name) for m in load_migrations()]


def _wait_for_lock_waiters(url: str, count: int) -> None:
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            if row is not None and row[0] >= count:
                return
            time.sleep(0.05)
    raise AssertionError(f"{count} migrate processes never waited for the lock")
