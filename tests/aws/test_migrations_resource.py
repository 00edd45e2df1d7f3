"""The migrations custom resource, through the `migrations` function's real handler:
a CloudFormation request in, the database migrated (its URL read from a Secrets Manager
secret in moto), and the answer PUT to the presigned ResponseURL, here a loopback
server that records it."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from spine.settings import get_settings
from spine.storage.migrate import load_migrations
from tests.fixtures.cloudformation import ResponseUrl, request

REPO = Path(__file__).resolve().parents[2]
MIGRATION_LOCK = int.from_bytes(b"SPINEMIG", "big", signed=True)
Handler = Callable[[dict[str, Any], Any], None]


@dataclass
class Context:
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def response_url() -> Iterator[ResponseUrl]:
    server = ResponseUrl()
    yield server
    server.close()


@pytest.fixture
def handler() -> Handler:
    """The function's entry module, loaded from its file like Lambda loads it."""
    spec = importlib.util.spec_from_file_location(
        "migrations_entry", REPO / "functions" / "migrations" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entry: Handler = module.handler
    return entry


def point_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Deployed configuration: no DATABASE_URL, the URL in a Secrets Manager secret."""
    name = f"spine/database-{uuid.uuid4().hex}"  # fresh: Powertools' cache outlives moto
    arn = boto3.client("secretsmanager").create_secret(Name=name, SecretString=url)["ARN"]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("SPINE_DATABASE__URL_SECRET", arn)
    monkeypatch.setenv("SPINE_DATABASE__CONNECT_TIMEOUT_SECONDS", "2")
    get_settings.cache_clear()


@pytest.fixture
def deployed_database(
    moto_aws: None, empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    point_at(monkeypatch, empty_db_url)
    yield empty_db_url
    get_settings.cache_clear()


def applied_versions(url: str) -> list[str]:
    """The versions recorded as applied; none when even the history table is missing."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
            return []
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [row[0] for row in rows]


def test_create_applies_every_migration_and_answers_success(
    handler: Handler, deployed_database: str, response_url: ResponseUrl
) -> None:
    # Given an empty database; When CloudFormation creates the resource
    event = request("Create", response_url.url)
    handler(event, Context())
    # Then every shipped migration is applied
    shipped = load_migrations()
    assert applied_versions(deployed_database) == [m.version for m in shipped]
    # And the answer is SUCCESS for this request, with what was applied
    [answer] = response_url.answers
    assert answer.body["Status"] == "SUCCESS"
    assert answer.body["RequestId"] == event["RequestId"]
    assert answer.body["StackId"] == event["StackId"]
    assert answer.body["LogicalResourceId"] == "DatabaseMigrations"
    assert answer.body["PhysicalResourceId"] == "spine-database-migrations"
    assert answer.body["Data"] == {
        "Applied": ",".join(m.label for m in shipped),
        "Version": shipped[-1].version,
    }
    # The presigned URL is signed for an empty content type
    assert answer.content_type == ""


def test_update_after_a_failed_deploy_applies_what_is_pending(
    handler: Handler, deployed_database: str, response_url: ResponseUrl
) -> None:
    # Given a deploy that failed on the first migration (a table in its way)
    with psycopg.connect(deployed_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE api_keys (unrelated int)")
    handler(request("Create", response_url.url), Context())
    assert response_url.answers[-1].body["Status"] == "FAILED"
    # When the operator removes the cause and the next deploy updates the resource
    with psycopg.connect(deployed_database, autocommit=True) as conn:
        conn.execute("DROP TABLE api_keys")
    handler(request("Update", response_url.url, "spine-database-migrations"), Context())
    # Then every pending migration is applied and reported, under the same physical id
    answer = response_url.answers[-1].body
    shipped = load_migrations()
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["Data"]["Applied"] == ",".join(m.label for m in shipped)
    assert answer["PhysicalResourceId"] == "spine-database-migrations"
    assert applied_versions(deployed_database) == [m.version for m in shipped]


def test_update_with_nothing_pending_succeeds_and_applies_nothing(
    handler: Handler, deployed_database: str, response_url: ResponseUrl
) -> None:
    handler(request("Create", response_url.url), Context())
    handler(request("Update", response_url.url, "spine-database-migrations"), Context())
    answer = response_url.answers[-1].body
    assert answer["Status"] == "SUCCESS"
    assert answer["Data"]["Applied"] == ""
    assert answer["PhysicalResourceId"] == "spine-database-migrations"
    assert applied_versions(deployed_database) == [m.version for m in load_migrations()]


def test_delete_leaves_the_database_alone(
    handler: Handler, deployed_database: str, response_url: ResponseUrl
) -> None:
    # Given a migrated database
    handler(request("Create", response_url.url), Context())
    # When the stack is deleted
    handler(request("Delete", response_url.url, "spine-database-migrations"), Context())
    # Then the answer is SUCCESS and every table is still there
    answer = response_url.answers[-1].body
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == "spine-database-migrations"
    assert applied_versions(deployed_database) == [m.version for m in load_migrations()]


def test_delete_succeeds_even_when_the_database_is_gone(
    handler: Handler, moto_aws: None, monkeypatch: pytest.MonkeyPatch, response_url: ResponseUrl
) -> None:
    # A stack whose database was removed first must still delete cleanly
    point_at(monkeypatch, "postgresql://spine@127.0.0.1:9/spine")
    handler(request("Delete", response_url.url, "spine-database-migrations"), Context())
    assert response_url.answers[-1].body["Status"] == "SUCCESS"
    get_settings.cache_clear()


def test_a_failing_migration_fails_the_deploy_with_its_error(
    handler: Handler, deployed_database: str, response_url: ResponseUrl
) -> None:
    # Given a database where the first migration cannot run (its table exists, other)
    with psycopg.connect(deployed_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE api_keys (unrelated int)")
    # When CloudFormation creates the resource
    handler(request("Create", response_url.url), Context())
    # Then the answer is FAILED and the reason names the migration and Postgres' error
    answer = response_url.answers[-1].body
    assert answer["Status"] == "FAILED"
    first = load_migrations()[0]
    assert f"migration {first.label} failed" in answer["Reason"]
    assert 'relation "api_keys" already exists' in answer["Reason"]
    assert answer["PhysicalResourceId"] == "spine-database-migrations"
    # And nothing was recorded as applied (the failed migration rolled back whole)
    assert applied_versions(deployed_database) == []


def test_an_edited_migration_fails_the_deploy(
    handler: Handler, deployed_database: str, response_url: ResponseUrl
) -> None:
    handler(request("Create", response_url.url), Context())
    with psycopg.connect(deployed_database, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = '0001'")
    handler(request("Update", response_url.url, "spine-database-migrations"), Context())
    answer = response_url.answers[-1].body
    assert answer["Status"] == "FAILED"
    assert "was edited after it was applied" in answer["Reason"]


def test_an_unreachable_database_fails_the_deploy(
    handler: Handler, moto_aws: None, monkeypatch: pytest.MonkeyPatch, response_url: ResponseUrl
) -> None:
    point_at(monkeypatch, "postgresql://spine@127.0.0.1:9/spine")
    handler(request("Create", response_url.url), Context())
    answer = response_url.answers[-1].body
    assert answer["Status"] == "FAILED"
    assert "database unavailable" in answer["Reason"]
    get_settings.cache_clear()


def test_answers_failed_before_lambda_would_stop_it(
    handler: Handler, deployed_database: str, response_url: ResponseUrl
) -> None:
    # Given another process holding the migration lock (a concurrent deploy)
    with psycopg.connect(deployed_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        # When the function has 11 s left (its answer margin is 10 s)
        handler(request("Create", response_url.url), Context(remaining_ms=11_000))
        # Then it answers FAILED in time rather than leaving CloudFormation waiting
        answer = response_url.answers[-1].body
        assert answer["Status"] == "FAILED"
        assert "did not finish" in answer["Reason"]
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
