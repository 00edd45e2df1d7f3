"""Provider API keys from Secrets Manager (moto), end to end through the real chat
handler: the provider fake checks the key it receives."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest

from tests.fakes import Reply, openai_api
from tests.fixtures.aws import log_records
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

HELLO = [{"role": "user", "content": "Say hello"}]
ENV_KEY = "api_key: {env: FAKE_OPENAI_KEY}"


def key_from_secret(env: Env, secret: str, field: str | None = "api_key") -> None:
    """Point gpt-test's key at a secret (instead of an environment variable)."""
    text = env.models_path.read_text()
    where = f"{{secret: {secret}, secret_key: {field}}}" if field else f"{{secret: {secret}}}"
    assert ENV_KEY in text
    env.write_models(text.replace(ENV_KEY, f"api_key: {where}", 1))


def new_secret(value: dict[str, str]) -> str:
    # A fresh name per test: Powertools' cache outlives a moto backend.
    name = f"spine/providers/openai-{uuid.uuid4().hex[:8]}"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(value))
    return name


def chat(gateway: Gateway, key: str, env: Env) -> Result:
    env.fakes.script("openai", Reply(openai_api.chat_completion("Hi")))
    return gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "gpt-test", "messages": HELLO},
        key=key,
    )


def upstream_authorization(env: Env) -> str:
    return str(env.fakes.last("openai").headers["authorization"])


def test_provider_key_comes_from_the_secret_and_rotation_is_seen_after_max_age(
    env: Env, moto_aws: None, gateway: Gateway, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given gpt-test's key in Secrets Manager, cached for 5 s (room for a loaded
    # machine between the first call and the second)
    monkeypatch.setenv("SPINE_SECRETS__MAX_AGE_SECONDS", "5")
    secret = new_secret({"api_key": "sk-from-vault-1", "org": "o-1"})
    key_from_secret(env, secret)
    # When a client calls the model
    first = chat(gateway, api_key, env)
    # Then the provider receives the secret's value as its bearer key
    assert first.status == 200, first.body
    assert upstream_authorization(env) == "Bearer sk-from-vault-1"
    # When the secret is rotated
    boto3.client("secretsmanager").put_secret_value(
        SecretId=secret, SecretString=json.dumps({"api_key": "sk-from-vault-2"})
    )
    # Then the cached value serves until max_age, the new one after it
    assert chat(gateway, api_key, env).status == 200
    assert upstream_authorization(env) == "Bearer sk-from-vault-1"
    time.sleep(5.05)
    assert chat(gateway, api_key, env).status == 200
    assert upstream_authorization(env) == "Bearer sk-from-vault-2"


def test_missing_secret_is_a_clear_500_naming_it(
    env: Env, moto_aws: None, gateway: Gateway, api_key: str
) -> None:
    key_from_secret(env, "spine/providers/never-created")
    result = chat(gateway, api_key, env)
    assert result.status == 500
    assert result.error == {
        "message": "The server could not read the secret 'spine/providers/never-created' "
        "(ResourceNotFoundException).",
        "type": "server_error",
        "param": None,
        "code": "secret_unavailable",
    }
    assert env.fakes.requests("openai") == []


def test_secret_without_the_field_never_leaks_its_value(
    env: Env,
    moto_aws: None,
    gateway: Gateway,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = new_secret({"apikey": "sk-must-not-leak"})
    key_from_secret(env, secret)
    result = chat(gateway, api_key, env)
    assert result.status == 500
    assert result.error["message"] == f"The secret '{secret}' has no JSON field 'api_key'."
    assert b"must-not-leak" not in result.body
    assert not [r for r in log_records(caplog) if "must-not-leak" in json.dumps(r, default=str)]
    assert "must-not-leak" not in capsys.readouterr().out
