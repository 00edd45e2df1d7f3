"""Logs and metrics a deployed function emits for one call."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Env
from tests.integration.gateway import Gateway


def emf_records(text: str) -> list[dict[str, object]]:
    records = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            records.append(json.loads(line))
    return records


def test_call_emits_emf_metrics_by_model_and_json_logs_with_request_id(
    gateway: Gateway,
    env: Env,
    api_key: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given metrics are on (the fixture turns them off for other tests)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    capsys.readouterr()
    # When
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        key=api_key,
    )
    assert result.status == 200, result.body
    out = capsys.readouterr().out
    # Then EMF records carry latency, tokens and cost with the model as a dimension
    metrics = {}
    for record in emf_records(out):
        directive = record["_aws"]["CloudWatchMetrics"][0]  # type: ignore[index]
        name = directive["Metrics"][0]["Name"]
        metrics[name] = record
        assert "model" in directive["Dimensions"][0]
    assert {"Latency", "InputTokens", "OutputTokens", "CostMicroUSD"} <= set(metrics)
    assert metrics["Latency"]["model"] == "gpt-test"
    assert metrics["Latency"]["provider"] == "openai"
    # And the JSON log lines carry the request id as correlation id
    request_id = result.headers["x-request-id"]
    logs = [
        json.loads(line)
        for line in out.splitlines()
        if line.startswith("{") and '"_aws"' not in line
    ]
    finished = [entry for entry in logs if entry.get("message") == "request finished"]
    assert finished and finished[-1]["correlation_id"] == request_id
    assert finished[-1]["status"] == 200


def test_errors_are_counted_by_model(
    gateway: Gateway,
    env: Env,
    api_key: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.fakes import Fail

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    env.fakes.script("openai", Fail(500))
    capsys.readouterr()
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        key=api_key,
    )
    assert result.status == 502
    errors = [
        r
        for r in emf_records(capsys.readouterr().out)
        if r["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == "Errors"  # type: ignore[index]
    ]
    assert len(errors) == 1
    assert errors[0]["model"] == "gpt-test" and errors[0]["code"] == "upstream_error"
