"""Migration numbers are assigned ahead of time, so files can land out of order:
a gap is fine, and a lower number that arrives later is still applied."""

from __future__ import annotations

import hashlib

import psycopg

from spine.storage.migrate import Migration, _apply_pending


def migration(version: str, name: str, sql: str) -> Migration:
    return Migration(version, name, sql, hashlib.sha256(sql.encode()).hexdigest())


def test_gap_then_late_lower_number(empty_db_url: str) -> None:
    first = migration("0001", "a", "CREATE TABLE a (x int);")
    third = migration("0003", "c", "CREATE TABLE c (x int);")
    second = migration("0002", "b", "CREATE TABLE b (x int);")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        # Given 0001 and 0003 (0002 not written yet) applied
        assert [m.label for m in _apply_pending(conn, [first, third])] == ["0001_a", "0003_c"]
        # When 0002 ships
        applied = _apply_pending(conn, [first, second, third])
        # Then only 0002 runs, and the history holds all three
        assert [m.label for m in applied] == ["0002_b"]
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == ["0001", "0002", "0003"]
