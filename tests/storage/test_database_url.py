"""Where the database is: DATABASE_URL, then the URL secret, then the embedded server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import boto3
import psycopg
import pytest
from moto import mock_aws

from spine.settings import DatabaseSettings, Settings
from spine.storage import embedded
from spine.storage.migrate import ensure_database, load_migrations


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def _secret(value: str) -> str:
    name = f"spine-db-{uuid.uuid4().hex}"  # Powertools caches secrets by name
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)
    return name


def test_database_url_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/db")
    settings = Settings(database=DatabaseSettings(url_secret="never-read"))
    assert embedded.database_url(settings) == "postgresql://from-env/db"


def test_url_secret_plain(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    name = _secret("postgresql://u:p@db.internal:5432/spine")
    settings = Settings(database=DatabaseSettings(url_secret=name))
    assert embedded.database_url(settings) == "postgresql://u:p@db.internal:5432/spine"


def test_url_secret_rds_json(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    name = _secret(
        json.dumps(
            {
                "engine": "postgres",
                "host": "db.internal",
                "port": 5432,
                "username": "spine",
                "password": "p w'd",
                "dbname": "spine",
            }
        )
    )
    settings = Settings(database=DatabaseSettings(url_secret=name))
    params = psycopg.conninfo.conninfo_to_dict(embedded.database_url(settings))
    assert params == {
        "host": "db.internal",
        "port": "5432",
        "user": "spine",
        "password": "p w'd",
        "dbname": "spine",
    }


def test_ensure_database_migrates_the_configured_database(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_db_url)

    url = ensure_database(Settings())

    assert url == empty_db_url
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert row == (len(load_migrations()),)
