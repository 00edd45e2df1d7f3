"""`spine usage prune`: retention from the command line."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from spine.storage.usage import UsageRecord, record_usage
from spine_tools.cli import main


def _seed(db_url: str, ages_in_days: list[int]) -> None:
    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            now = datetime.now(UTC)
            for n, age in enumerate(ages_in_days):
                await record_usage(
                    conn,
                    UsageRecord(
                        request_id=f"req-{n}",
                        model="m",
                        endpoint="chat.completions",
                        created_at=now - timedelta(days=age),
                    ),
                )

    asyncio.run(go())


def _ages(db_url: str) -> list[int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT extract(day FROM now() - created_at)::int FROM usage_events ORDER BY 1"
        )
        return [int(r[0]) for r in rows]


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def test_prune_deletes_only_rows_past_the_age(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given rows 1, 30, 89, 91, 120 and 400 days old
    _seed(cli_db, [1, 30, 89, 91, 120, 400])
    # When a dry run, then the prune, run with small batches
    assert main(["usage", "prune", "--older-than", "90d", "--dry-run"]) == 0
    assert "would delete 3 usage rows" in capsys.readouterr().out
    assert len(_ages(cli_db)) == 6
    assert main(["usage", "prune", "--older-than", "90d", "--batch-size", "2"]) == 0
    # Then the three older rows are gone and the rest are kept
    assert "deleted 3 usage rows" in capsys.readouterr().out
    assert _ages(cli_db) == [1, 30, 89]
    # And weeks work too
    assert main(["usage", "prune", "--older-than", "4w"]) == 0
    assert _ages(cli_db) == [1]


@pytest.mark.parametrize("age", ["90", "0d", "12h", "ninety days", "-5d"])
def test_prune_refuses_a_bad_age(age: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["usage", "prune", "--older-than", age])
    assert exited.value.code == 2
    assert "--older-than" in capsys.readouterr().err


def test_prune_refuses_a_zero_batch(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["usage", "prune", "--older-than", "90d", "--batch-size", "0"])
    assert "--batch-size" in capsys.readouterr().err
