"""Postgres restarted or stopped under the real handlers: no answered request loses its
usage row, and none is billed twice.

A private embedded Postgres (this module's own, so stopping it disturbs no other
test) is restarted while the functions are idle, and stopped while requests are in
flight. Every request the client saw answered must have exactly one ledger row once
the database is back; a dead connection is replaced, or the answer is a 503 in
OpenAI's shape with Retry-After, never a 500.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from spine.maintenance import run_maintenance
from spine.settings import get_settings
from spine.storage import db
from spine.storage.migrate import apply_migrations
from tests.fakes import Delay, FakeProviders, Reply, openai_api
from tests.integration.conftest import Env, prepare_env, run_async
from tests.integration.gateway import Gateway, Result

HELLO = [{"role": "user", "content": "Say hello"}]


class RestartablePostgres:
    """An embedded Postgres of its own that a test may stop and start again."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

        self.folder = tempfile.mkdtemp(prefix="spine-test-faults-")
        self.server = pgserver.get_server(self.folder, cleanup_mode="delete")
        self.url = self.server.get_uri()
        apply_migrations(self.url)

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()
        assert self.server.get_uri() == self.url

    def close(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres()
    yield server
    db.configure(None)
    server.close()


@pytest.fixture
def env(
    tmp_path: Path,
    postgres: RestartablePostgres,
    fake_providers: FakeProviders,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Env]:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("TRUNCATE usage_events, api_keys, rate_counters")
    environment = prepare_env(tmp_path, postgres.url, fake_providers, monkeypatch)
    config = environment.root / "config.toml"
    config.write_text(config.read_text() + '\n[usage]\nspool_dir = "spool"\n')
    yield environment
    db.reset()
    postgres.start()  # a test that failed with it stopped leaves it running for the next


def spooled(env: Env) -> list[Path]:
    return sorted((env.root / "spool").glob("*.json"))


def chat(gateway: Gateway, key: str) -> Result:
    body = {"model": "gpt-test", "messages": HELLO}
    return gateway.request("POST", "/v1/chat/completions", json_body=body, key=key)


def reply() -> Reply:
    return Reply(openai_api.chat_completion("Hi", usage_body=openai_api.usage(9, 3)))


def rows_by_request(env: Env) -> dict[str, int]:
    with psycopg.connect(env.db_url) as conn:
        rows = conn.execute("SELECT request_id, count(*) FROM usage_events GROUP BY 1").fetchall()
    return {str(request_id): int(n) for request_id, n in rows}


def drain(env: Env) -> dict[str, int]:
    get_settings.cache_clear()

    async def go() -> dict[str, int]:
        conn = await db.connect(env.db_url, connect_timeout=5)
        async with conn:
            return await run_maintenance(conn, get_settings(), ("usage_spool",))

    return run_async(go())


@pytest.mark.parametrize("credential", ["api_key", "jwt"])
def test_a_restart_while_idle_costs_no_request_and_no_row(
    env: Env, postgres: RestartablePostgres, monkeypatch: pytest.MonkeyPatch, credential: str
) -> None:
    # Given warm functions holding connections, then Postgres restarted while idle
    key = env.create_key("caller")
    if credential == "jwt":
        key = _spine_jwt(monkeypatch, key)
    env.fakes.script("openai", *[reply() for _ in range(9)])
    gateway = Gateway()
    try:
        assert chat(gateway, key).status == 200  # warms the function and its connection
        postgres.stop()
        postgres.start()
        # When 8 chats follow
        results = [chat(gateway, key) for _ in range(8)]
    finally:
        gateway.close()

    # Then every one is answered, with its row, written once: nothing was spooled
    assert [r.status for r in results] == [200] * 8, [r.body for r in results]
    rows = rows_by_request(env)
    assert all(rows.get(r.headers["x-request-id"]) == 1 for r in results), rows
    assert len(rows) == 9
    assert spooled(env) == []


def test_rows_of_requests_answered_while_postgres_is_down_arrive_once_it_is_back(
    env: Env, postgres: RestartablePostgres
) -> None:
    # Given 4 requests in flight (authenticated and admitted; the provider is slow)
    key = env.create_key("caller")
    env.fakes.script("openai", *[Delay(1.5, then=reply()) for _ in range(4)], reply())
    results: list[Result] = []
    gateways = [Gateway() for _ in range(4)]
    lock = threading.Lock()

    def call(gateway: Gateway) -> None:
        result = chat(gateway, key)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=call, args=(gw,)) for gw in gateways]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.7)  # past auth and admission, waiting on the provider
        # When Postgres stops before they are answered
        postgres.stop()
        for thread in threads:
            thread.join(timeout=30)
        # Then each is still answered, its row spooled, not lost
        assert [r.status for r in results] == [200] * 4, [r.body for r in results]
        assert len(spooled(env)) == 4
        # And once Postgres is back, the next answered request writes them all
        postgres.start()
        after = chat(gateways[0], key)
    finally:
        for gateway in gateways:
            gateway.close()
    assert after.status == 200, after.body
    rows = rows_by_request(env)
    answered = [r.headers["x-request-id"] for r in [*results, after]]
    assert {request_id: rows.get(request_id) for request_id in answered} == dict.fromkeys(
        answered, 1
    )
    assert spooled(env) == []
    # A second drain (the maintenance schedule) writes nothing twice
    assert drain(env)["usage_spool"] == 0
    assert len(rows_by_request(env)) == 5


def test_the_spool_replays_a_row_whose_write_did_commit_once(
    env: Env, postgres: RestartablePostgres
) -> None:
    # Given a row spooled and also written (the link broke after the commit), with the
    # rate-limit settlement it owes
    from spine.usage.spool import FileSpool, SpooledUsage

    key = env.create_key("caller")
    env.fakes.script("openai", reply())
    gateway = Gateway()
    try:
        result = chat(gateway, key)
    finally:
        gateway.close()
    assert result.status == 200
    request_id = result.headers["x-request-id"]
    with psycopg.connect(env.db_url, row_factory=psycopg.rows.dict_row) as conn:
        row: dict[str, Any] = conn.execute(
            "SELECT * FROM usage_events WHERE request_id = %s", (request_id,)
        ).fetchone()  # type: ignore[assignment]
    from spine.storage.usage import UsageRecord

    fields = {name: row[name] for name in UsageRecord.__dataclass_fields__}
    FileSpool(env.root / "spool").keep(SpooledUsage(UsageRecord(**fields), ()))
    # When the spool is drained
    report = drain(env)
    # Then nothing new was written and the spool is empty
    assert report["usage_spool"] == 0
    assert rows_by_request(env) == {request_id: 1}
    assert spooled(env) == []


def test_postgres_down_at_admission_is_a_503_with_retry_after(
    env: Env, postgres: RestartablePostgres
) -> None:
    key = env.create_key("caller")
    gateway = Gateway()
    try:
        postgres.stop()
        result = chat(gateway, key)
    finally:
        postgres.start()
        gateway.close()
    assert result.status == 503, result.body
    assert result.error["code"] == "database_unavailable"
    assert int(result.headers["retry-after"]) >= 1
    assert "x-request-id" in result.headers
    # The message names the cause, never the server's address or socket
    assert postgres.folder not in result.error["message"]
    assert "/" not in result.error["message"]
    assert env.fakes.requests("openai") == []


def _spine_jwt(monkeypatch: pytest.MonkeyPatch, key: str) -> str:
    """A JWT of Spine's own for `key`'s principal (a caller without limits whose
    request touches the database only for its usage row)."""
    import jwt as pyjwt

    from spine.auth.secret import secret_kid
    from tests.auth.keys import SECRET

    monkeypatch.setenv("SPINE_JWT_SECRET", SECRET)
    now = int(time.time())
    claims = {"iss": "spine", "aud": "spine", "sub": "jwt-user", "iat": now, "exp": now + 300}
    return pyjwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": secret_kid(SECRET)})
