"""The health function: liveness without auth, readiness of its dependencies."""

from __future__ import annotations

from spine.storage import db
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway


def test_health_needs_no_key_and_returns_request_id(gateway: Gateway) -> None:
    # When
    result = gateway.request("GET", "/health")
    # Then
    assert result.status == 200
    assert result.json() == {"status": "ok"}
    assert result.headers["x-request-id"] == result.event["requestContext"]["requestId"]


def test_ready_reports_each_dependency(gateway: Gateway, env: Env) -> None:
    # Given the models include no local model, only the database is checked
    env.write_models(env.models_path.read_text())
    # When
    result = gateway.request("GET", "/ready")
    # Then
    body = result.json()
    assert body["checks"]["database"]["status"] == "ok"
    assert "worker" not in body["checks"]
    assert result.status == 200


def test_ready_is_503_when_the_worker_is_down(gateway: Gateway, env: Env) -> None:
    # Given a local model whose worker (port 9, nothing listens) is unreachable
    env.write_models(
        env.models_path.read_text().replace(
            "profiles:",
            "  - id: local-test\n    provider: llamacpp\n    model: m\n    context_window: 4096\n"
            "    engine: {gguf: {file: m.gguf}}\nprofiles:",
        )
    )
    # When
    result = gateway.request("GET", "/ready")
    # Then
    assert result.status == 503
    body = result.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["worker"]["status"] == "unavailable"


def test_ready_is_503_when_the_database_is_down(gateway: Gateway) -> None:
    # Given a database where nothing listens
    db.configure("postgresql://spine@127.0.0.1:9/spine", connect_timeout=1)
    # When
    result = gateway.request("GET", "/ready")
    # Then
    assert result.status == 503
    assert result.json()["checks"]["database"] == {
        "status": "unavailable",
        "error": "ServiceUnavailableError",
        "latency_ms": result.json()["checks"]["database"]["latency_ms"],
    }
