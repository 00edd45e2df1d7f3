"""The `admin` function through its real Lambda handler: identity for the admin app,
the worker's model lifecycle against a real worker (llama-server and SmolLM2), and the
models.yaml check. Every admin route refuses a credential without the admin scope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.fakes import Fail
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway
from tests.worker.conftest import TOKEN, WorkerProcess, llama_server, model_file

__all__ = ["llama_server", "model_file"]

ADMIN_ROUTES = [
    ("GET", "/v1/admin/worker/models", None),
    ("POST", "/v1/admin/worker/models/load", {"model": "smollm2-135m"}),
    ("POST", "/v1/admin/worker/models/unload", {"model": "smollm2-135m"}),
    ("POST", "/v1/admin/worker/models/reload", {"model": "smollm2-135m"}),
    ("POST", "/v1/admin/models/check", {"content": "version: 1\nmodels: []\n"}),
    ("GET", "/v1/admin/latency", None),
    ("GET", "/v1/admin/deployments", None),
]


@pytest.fixture(scope="module")
def shared_worker(
    llama_server: Path, model_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        tmp_path_factory.mktemp("admin-worker"),
        [{"id": "smollm2-135m"}],
        [model_file.parent],
        "--idle-ttl", "0",
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    worker.start(wait_ready=True)
    yield worker
    worker.stop()


@pytest.fixture
def worker(shared_worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch) -> WorkerProcess:
    monkeypatch.setenv("SPINE_WORKER__URL", shared_worker.url)
    monkeypatch.setenv("SPINE_WORKER_TOKEN", TOKEN)
    return shared_worker


def audit_events(out: str) -> list[dict[str, object]]:
    events = []
    for line in out.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("message") == "worker model lifecycle":
                events.append(entry)
    return events


def test_me_names_the_key_and_its_scopes(gateway: Gateway, env: Env) -> None:
    admin = env.create_key("ops", principal="ops", scopes=["admin"])
    user = env.create_key("app", principal="app", scopes=["prompts:write"])
    mine = gateway.request("GET", "/v1/me", key=admin)
    assert mine.status == 200, mine.body
    assert mine.json()["subject"] == "ops"
    assert mine.json()["admin"] is True
    theirs = gateway.request("GET", "/v1/me", key=user).json()
    assert theirs["scopes"] == ["prompts:write"]
    assert theirs["admin"] is False


def test_me_without_a_credential_is_401(gateway: Gateway, env: Env) -> None:
    result = gateway.request("GET", "/v1/me")
    assert result.status == 401
    assert result.error["type"] == "authentication_error"


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_a_key_without_the_admin_scope(
    gateway: Gateway, env: Env, method: str, path: str, body: object
) -> None:
    # Given a key that may write prompts and keys, but is not admin
    key = env.create_key("app", principal="app", scopes=["prompts:write", "keys:write"])
    # When it calls an admin route
    result = gateway.request(method, path, json_body=body, key=key)
    # Then 403 in OpenAI's shape, before any worker call (the worker URL is a dead port)
    assert result.status == 403, result.body
    assert result.error["code"] == "insufficient_scope"


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_anonymous_and_revoked(
    gateway: Gateway, env: Env, method: str, path: str, body: object
) -> None:
    assert gateway.request(method, path, json_body=body).status == 401
    key = env.create_key("old", principal="ops", scopes=["admin"])
    env.revoke(key)
    assert gateway.request(method, path, json_body=body, key=key).status == 401


@pytest.mark.worker
def test_admin_unloads_and_loads_a_worker_model_audited(
    gateway: Gateway, env: Env, worker: WorkerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an admin key and a worker with SmolLM2 loaded
    key = env.create_key("ops", principal="ops@example.com", scopes=["admin"])
    listed = gateway.request("GET", "/v1/admin/worker/models", key=key)
    assert listed.status == 200, listed.body
    assert {m["id"]: m["state"] for m in listed.json()["data"]} == {"smollm2-135m": "ready"}
    capsys.readouterr()

    # When the admin unloads it
    unloaded = gateway.request(
        "POST", "/v1/admin/worker/models/unload", json_body={"model": "smollm2-135m"}, key=key
    )
    # Then the worker stopped its engine
    assert unloaded.status == 200, unloaded.body
    assert unloaded.json()["unloaded"] is True
    assert worker.models()["smollm2-135m"]["state"] == "unloaded"

    # When the admin loads it again, then it answers
    loaded = gateway.request(
        "POST", "/v1/admin/worker/models/load", json_body={"model": "smollm2-135m"}, key=key
    )
    assert loaded.status == 200, loaded.body
    assert loaded.json()["state"] == "ready"
    assert worker.chat("smollm2-135m").status_code == 200

    # And reload restarts it (a new engine process)
    pid = worker.models()["smollm2-135m"]["pid"]
    reloaded = gateway.request(
        "POST", "/v1/admin/worker/models/reload", json_body={"model": "smollm2-135m"}, key=key
    )
    assert reloaded.status == 200, reloaded.body
    assert reloaded.json()["pid"] not in (None, pid)

    # And each change is audited by the gateway, naming the principal and key
    events = audit_events(capsys.readouterr().out)
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("unload", "done"),
        ("load", "done"),
        ("reload", "done"),
    ]
    assert {e["principal"] for e in events} == {"ops@example.com"}
    assert all(e["api_key_id"] and e["correlation_id"] for e in events)
    # And by the worker, which was told who asked
    actors = [e for e in worker.audit() if e.get("action") in ("unload", "load", "reload")]
    assert actors and all(str(e["actor"]).endswith(":ops@example.com") for e in actors[-3:])


@pytest.mark.worker
def test_unknown_worker_model_is_the_workers_404_and_audited(
    gateway: Gateway, env: Env, worker: WorkerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    key = env.create_key("ops", principal="ops", scopes=["admin"])
    capsys.readouterr()
    result = gateway.request(
        "POST", "/v1/admin/worker/models/load", json_body={"model": "no-such"}, key=key
    )
    assert result.status == 404, result.body
    assert result.error["param"] == "model"
    events = audit_events(capsys.readouterr().out)
    assert [(e["action"], e["outcome"], e["status"]) for e in events] == [("load", "refused", 404)]


def test_bad_lifecycle_requests_are_400_or_404(gateway: Gateway, env: Env) -> None:
    key = env.create_key("ops", principal="ops", scopes=["admin"])
    unknown = gateway.request(
        "POST", "/v1/admin/worker/models/explode", json_body={"model": "x"}, key=key
    )
    assert unknown.status == 404
    assert unknown.error["param"] == "action"
    missing = gateway.request("POST", "/v1/admin/worker/models/load", json_body={}, key=key)
    assert missing.status == 400
    assert missing.error["param"] == "model"
    extra = gateway.request(
        "POST", "/v1/admin/worker/models/load", json_body={"model": "x", "y": 1}, key=key
    )
    assert extra.status == 400


def test_worker_down_is_503_in_openai_shape(gateway: Gateway, env: Env) -> None:
    # The test config points the worker at a closed port.
    key = env.create_key("ops", principal="ops", scopes=["admin"])
    result = gateway.request("GET", "/v1/admin/worker/models", key=key)
    assert result.status == 503
    assert result.error["code"] == "worker_unavailable"


def test_models_check_passes_the_repository_file(gateway: Gateway, env: Env) -> None:
    key = env.create_key("ops", principal="ops", scopes=["admin"])
    content = (Path(__file__).resolve().parents[2] / "models.yaml").read_text()
    result = gateway.request(
        "POST", "/v1/admin/models/check", json_body={"content": content}, key=key
    )
    assert result.status == 200, result.body
    body = result.json()
    assert body["valid"] is True and body["problems"] == []
    assert "smollm2-135m" in body["models"] or body["models"]


def test_models_check_names_the_line_of_each_problem(gateway: Gateway, env: Env) -> None:
    key = env.create_key("ops", principal="ops", scopes=["admin"])
    content = (
        "version: 1\n"
        "models:\n"
        "  - id: a\n"
        "    provider: openai\n"
        "    model: gpt-4o-mini\n"
        "    pricing: {input: -1, output: 1}\n"
        "    fallbacks: [nowhere]\n"
    )
    result = gateway.request(
        "POST", "/v1/admin/models/check", json_body={"content": content}, key=key
    )
    assert result.status == 200, result.body
    body = result.json()
    assert body["valid"] is False
    lines = {p["line"] for p in body["problems"]}
    assert 6 in lines and 7 in lines, body["problems"]
    assert all(p["text"].startswith(f"models.yaml:{p['line']}: ") for p in body["problems"])


def test_models_check_reports_broken_yaml_and_refuses_a_bad_body(
    gateway: Gateway, env: Env
) -> None:
    key = env.create_key("ops", principal="ops", scopes=["admin"])
    broken = gateway.request(
        "POST", "/v1/admin/models/check", json_body={"content": "version: 1\nmodels: [\n"}, key=key
    )
    assert broken.status == 200
    assert broken.json()["valid"] is False
    assert "invalid YAML" in broken.json()["problems"][0]["message"]
    not_text = gateway.request("POST", "/v1/admin/models/check", json_body={"content": 3}, key=key)
    assert not_text.status == 400
    assert not_text.error["param"] == "content"


def chat(gateway: Gateway, key: str, model: str = "gpt-test") -> int:
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        key=key,
    )
    return result.status


def test_latency_percentiles_and_error_rates_by_provider_and_model(
    gateway: Gateway, env: Env
) -> None:
    # Given two answered calls and one the provider refused, from two keys
    admin = env.create_key("ops", principal="ops", scopes=["admin"])
    user = env.create_key("app", principal="app")
    assert chat(gateway, admin) == 200
    assert chat(gateway, user, "gemini-test") == 200
    env.fakes.script("openai", Fail(400, message="bad request upstream"))
    assert chat(gateway, user) == 400
    # When the admin reads the latency report
    result = gateway.request("GET", "/v1/admin/latency", key=admin)
    assert result.status == 200, result.body
    body = result.json()
    # Then it covers every principal's calls, by provider, by model and overall
    assert body["totals"]["requests"] == 3
    assert body["totals"]["errors"] == 1
    providers = {row["provider"]: row for row in body["by_provider"]}
    assert providers["openai"]["requests"] == 2
    assert providers["openai"]["error_rate"] == 0.5
    assert providers["gemini"]["errors"] == 0
    models = {row["model"]: row for row in body["by_model"]}
    assert set(models) == {"gpt-test", "gemini-test"}
    rows = env.usage_rows()
    latencies = sorted(float(r["latency_ms"]) for r in rows if r["provider"] == "gemini")  # type: ignore[arg-type]
    assert models["gemini-test"]["p50_ms"] == pytest.approx(latencies[0], abs=0.1)
    for row in body["by_model"]:
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]


def test_latency_range_is_checked(gateway: Gateway, env: Env) -> None:
    admin = env.create_key("ops", principal="ops", scopes=["admin"])
    empty = gateway.request(
        "GET", "/v1/admin/latency", key=admin, query="start=2020-01-01&end=2020-02-01"
    )
    assert empty.status == 200
    assert empty.json()["totals"] == {
        "requests": 0, "errors": 0, "error_rate": 0.0,
        "p50_ms": None, "p90_ms": None, "p99_ms": None,
    }  # fmt: skip
    backwards = gateway.request(
        "GET", "/v1/admin/latency", key=admin, query="start=2020-02-01&end=2020-01-01"
    )
    assert backwards.status == 400 and backwards.error["param"] == "end"
    too_long = gateway.request(
        "GET", "/v1/admin/latency", key=admin, query="start=2020-01-01&end=2022-01-01"
    )
    assert too_long.status == 400 and too_long.error["param"] == "start"
    unknown = gateway.request("GET", "/v1/admin/latency", key=admin, query="model=x")
    assert unknown.status == 400 and unknown.error["param"] == "model"
    garbled = gateway.request("GET", "/v1/admin/latency", key=admin, query="start=yesterday")
    assert garbled.status == 400 and garbled.error["param"] == "start"


def test_deployments_with_their_cooldowns(gateway: Gateway, env: Env) -> None:
    admin = env.create_key("ops", principal="ops", scopes=["admin"])
    # Given one deployment cooling down and one whose failures did not reach the threshold
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO deployment_cooldowns (model_id, deployment, failures, cooled_until,"
            " last_error) VALUES ('gpt-test', 'default', 3, now() + interval '1 minute',"
            " 'upstream_error'), ('gemini-test', 'default', 1, NULL, 'upstream_timeout')"
        )
    result = gateway.request("GET", "/v1/admin/deployments", key=admin)
    assert result.status == 200, result.body
    by_model = {m["model"]: m for m in result.json()["data"]}
    gpt = by_model["gpt-test"]["deployments"]
    assert [d["name"] for d in gpt] == ["default"]
    assert gpt[0]["cooldown"]["cooling"] is True
    assert gpt[0]["cooldown"]["failures"] == 3
    gemini = by_model["gemini-test"]["deployments"][0]
    assert gemini["cooldown"]["cooling"] is False
    assert gemini["cooldown"]["last_error"] == "upstream_timeout"
    assert by_model["claude-test"]["deployments"][0]["cooldown"] is None
