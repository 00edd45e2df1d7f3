"""Scheduled maintenance against a real Postgres: expired limit windows and cache
entries go, usage rows go only past the configured retention, live rows stay; the
Lambda entry runs it for a scheduled event."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from spine.maintenance import run_maintenance
from spine.settings import RetentionSettings, Settings
from spine.storage.db import Connection

REPO = Path(__file__).resolve().parents[2]

# An EventBridge Scheduler invocation, as Lambda receives it.
SCHEDULED_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.scheduler",
    "account": "123456789012",
    "time": "2026-11-21T07:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/spine-hourly"],
    "detail": {},
}


async def seed(conn: Connection) -> None:
    """Two of each: one past its end, one live."""
    await conn.execute(
        """
        INSERT INTO rate_counters (subject, metric, window_start, window_end, used)
        VALUES ('principal:a', 'requests', now() - interval '3 hours',
                now() - interval '2 hours', 5),
               ('principal:a', 'requests', date_trunc('minute', now()),
                date_trunc('minute', now()) + interval '1 minute', 1)
        """
    )
    await conn.execute(
        """
        INSERT INTO response_cache (cache_key, scope, endpoint, model_id, provider,
                                    deployment, request_id, response, expires_at)
        VALUES (sha256('old'), 't', 'chat.completions', 'm', 'openai', 'default', 'r1',
                '{}', now() - interval '1 second'),
               (sha256('new'), 't', 'chat.completions', 'm', 'openai', 'default', 'r2',
                '{}', now() + interval '1 hour')
        """
    )
    await conn.execute(
        """
        INSERT INTO usage_events (request_id, created_at, model, endpoint, status)
        VALUES ('old', now() - interval '40 days', 'm', 'chat.completions', 'ok'),
               ('new', now() - interval '2 days', 'm', 'chat.completions', 'ok')
        """
    )


async def remaining(conn: Connection) -> dict[str, int]:
    counts = {}
    for table in ("rate_counters", "response_cache", "usage_events"):
        row = await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone()
        assert row is not None
        counts[table] = int(row[0])
    return counts


async def test_expired_rows_go_and_usage_only_past_retention(db_conn: Connection) -> None:
    await seed(db_conn)
    settings = Settings(retention=RetentionSettings(usage_days=30, batch_size=1))

    deleted = await run_maintenance(db_conn, settings)

    assert deleted == {"usage_spool": 0, "rate_counters": 1, "response_cache": 1, "usage_events": 1}
    assert await remaining(db_conn) == {"rate_counters": 1, "response_cache": 1, "usage_events": 1}
    row = await (await db_conn.execute("SELECT request_id FROM usage_events")).fetchone()
    assert row == ("new",)


async def test_without_retention_the_ledger_is_kept_whole(db_conn: Connection) -> None:
    await seed(db_conn)

    deleted = await run_maintenance(db_conn, Settings())

    assert deleted["usage_events"] == 0
    assert (await remaining(db_conn))["usage_events"] == 2


def test_the_lambda_entry_runs_it_for_a_scheduled_event(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asyncio

    import psycopg

    async def prepare() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await seed(conn)

    asyncio.run(prepare())
    (tmp_path / "config.toml").write_text("[retention]\nusage_days = 30\n")
    monkeypatch.setenv("SPINE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    spec = importlib.util.spec_from_file_location(
        "maintenance_app", REPO / "functions" / "maintenance" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    result = module.handler(SCHEDULED_EVENT, None)

    assert result == {
        "deleted": {"usage_spool": 0, "rate_counters": 1, "response_cache": 1, "usage_events": 1}
    }
