"""SnapStart hooks through a real function: its entry module registers them with the
runtime's `snapshot_restore_py` (here a stand-in module that records the hooks, as
Lambda's Python runtime provides it), the before-snapshot hook primes the function
without leaving a connection in the snapshot, and after a restore the function uses a
new database connection, a fresh random state and freshly read secrets."""

from __future__ import annotations

import random
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import boto3
import psycopg
import pytest

from spine.aws.secrets import get_secret
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway

Hook = Callable[[], None]


@dataclass
class Runtime:
    """What Lambda's `snapshot_restore_py` keeps: the registered hooks."""

    before_snapshot: list[Hook] = field(default_factory=list)
    after_restore: list[Hook] = field(default_factory=list)

    def snapshot(self) -> None:
        for hook in self.before_snapshot:
            hook()

    def restore(self) -> None:
        for hook in self.after_restore:
            hook()


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Runtime:
    runtime = Runtime()
    module = types.ModuleType("snapshot_restore_py")
    module.register_before_snapshot = runtime.before_snapshot.append  # type: ignore[attr-defined]
    module.register_after_restore = runtime.after_restore.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", module)
    return runtime


@pytest.fixture
def gw(env: Env, runtime: Runtime) -> Iterator[Gateway]:
    gateway = Gateway()
    yield gateway
    gateway.close()


def spine_backends(url: str) -> set[int]:
    """The server processes of Spine's request connections (application_name spine)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'spine'"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return {row[0] for row in rows}


def test_entry_module_registers_one_hook_of_each_kind(gw: Gateway, runtime: Runtime) -> None:
    gw.module("ModelsFunction")
    assert len(runtime.before_snapshot) == 1
    assert len(runtime.after_restore) == 1


def test_priming_leaves_no_connection_and_the_first_request_is_served(
    gw: Gateway, runtime: Runtime, env: Env, api_key: str
) -> None:
    # Given the function's init (the entry module) and its before-snapshot hook
    gw.module("ModelsFunction")
    runtime.snapshot()
    # Then nothing in the snapshot holds a database connection
    assert spine_backends(env.db_url) == set()
    # And after a restore the first request is answered
    runtime.restore()
    response = gw.request("GET", "/v1/models", key=api_key)
    assert response.status == 200
    assert {m["id"] for m in response.json()["data"]} >= {"gpt-test", "claude-test"}


def test_after_restore_the_function_uses_a_new_database_connection(
    gw: Gateway, runtime: Runtime, env: Env, api_key: str
) -> None:
    # Given a function that served a request (its connection is cached)
    gw.module("ModelsFunction")
    runtime.snapshot()
    assert gw.request("GET", "/v1/models", key=api_key).status == 200
    before = spine_backends(env.db_url)
    assert len(before) == 1
    # When it is restored (the snapshot's sockets are gone) and serves again
    runtime.restore()
    assert gw.request("GET", "/v1/models", key=api_key).status == 200
    # Then it connected anew: the old backend is closed and a new one serves
    after = spine_backends(env.db_url)
    assert len(after) == 1
    assert after.isdisjoint(before)


def test_instances_restored_from_one_snapshot_draw_different_random_numbers(
    gw: Gateway, runtime: Runtime
) -> None:
    # Given the random state a snapshot holds
    gw.module("ModelsFunction")
    runtime.snapshot()
    random.seed(1234)
    snapshot_state = random.getstate()
    # When two instances are restored from it
    draws = []
    for _ in range(2):
        random.setstate(snapshot_state)
        runtime.restore()
        draws.append([random.random() for _ in range(4)])
    # Then neither repeats the snapshot's sequence nor the other's
    random.setstate(snapshot_state)
    from_snapshot = [random.random() for _ in range(4)]
    assert draws[0] != from_snapshot
    assert draws[1] != from_snapshot
    assert draws[0] != draws[1]


def test_after_restore_secrets_are_read_again(
    gw: Gateway, runtime: Runtime, moto_aws: None
) -> None:
    # Given a secret read (and cached for max_age) before the snapshot
    name = f"spine/providers/snapstart-{uuid.uuid4().hex}"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString="sk-before")
    gw.module("ModelsFunction")
    assert get_secret(name, max_age=3600) == "sk-before"
    runtime.snapshot()
    # When it is rotated while the snapshot waits, and an instance is restored
    boto3.client("secretsmanager").put_secret_value(SecretId=name, SecretString="sk-after")
    assert get_secret(name, max_age=3600) == "sk-before"  # cached, as designed
    runtime.restore()
    # Then the restored instance reads the rotated value
    assert get_secret(name, max_age=3600) == "sk-after"


@pytest.mark.parametrize("function", ["chat", "models"])
def test_after_priming_the_first_request_imports_nothing(
    gw: Gateway, env: Env, api_key: str, function: str
) -> None:
    # Given a fresh process that ran the function's init and before-snapshot hook
    # (the benchmark's instance script: the runtime's hooks stood in, as here)
    from tests.benchmarks.bench_snapstart import REPO, instance

    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    event = (
        gw.request("POST", "/v1/chat/completions", json_body=body, key=api_key).event
        if function == "chat"
        else gw.request("GET", "/v1/models", key=api_key).event
    )
    # When it is restored and serves its first request
    figures = instance(REPO / "functions" / function / "app.py", event, "snapstart")
    # Then that request loaded no module: the snapshot held everything it needed
    assert figures["new_modules"] == []
