"""Secrets Manager through Powertools' parameters utility: caching for max_age,
rotation, the endpoint the client talks to, and errors that never carry a value."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest

from spine.aws.clients import aws_client
from spine.aws.secrets import SecretUnavailableError, get_secret
from tests.fixtures.aws import CallLog


def new_secret(value: str, client: object | None = None) -> str:
    # A fresh name per test: the Powertools cache outlives a moto backend.
    name = f"spine/providers/test-{uuid.uuid4().hex}"
    (client or boto3.client("secretsmanager")).create_secret(  # type: ignore[attr-defined]
        Name=name, SecretString=value
    )
    return name


def test_plain_and_json_field_secrets(moto_aws: None) -> None:
    assert get_secret(new_secret("sk-plain")) == "sk-plain"
    name = new_secret(json.dumps({"api_key": "sk-field", "org": "o-1"}))
    assert get_secret(name, key="api_key") == "sk-field"


def test_value_is_cached_for_max_age_then_the_rotation_is_seen(moto_aws: None) -> None:
    # Given a secret read once
    name = new_secret(json.dumps({"api_key": "sk-before"}))
    assert get_secret(name, key="api_key", max_age=1) == "sk-before"
    calls = CallLog(aws_client("secretsmanager"))
    # When it is rotated
    boto3.client("secretsmanager").put_secret_value(
        SecretId=name, SecretString=json.dumps({"api_key": "sk-after"})
    )
    # Then reads within max_age use the cached value, without calling AWS
    assert get_secret(name, key="api_key", max_age=1) == "sk-before"
    assert calls.calls == []
    # And the first read after max_age gets the new value
    time.sleep(1.05)
    assert get_secret(name, key="api_key", max_age=1) == "sk-after"
    assert calls.calls == [("GetSecretValue", 200)]


def test_missing_secret_names_it_without_aws_details(moto_aws: None) -> None:
    with pytest.raises(SecretUnavailableError) as caught:
        get_secret("spine/providers/absent")
    error = caught.value
    assert error.status_code == 500
    assert error.code == "secret_unavailable"
    assert error.message == (
        "The server could not read the secret 'spine/providers/absent' (ResourceNotFoundException)."
    )
    # Nothing chained that a traceback could print
    assert error.__suppress_context__ and error.__cause__ is None


def test_missing_json_field_never_shows_the_value(moto_aws: None) -> None:
    name = new_secret(json.dumps({"other": "sk-must-not-leak"}))
    with pytest.raises(SecretUnavailableError) as caught:
        get_secret(name, key="api_key")
    assert caught.value.message == f"The secret '{name}' has no JSON field 'api_key'."
    assert caught.value.__suppress_context__
    not_json = new_secret("sk-not-json-must-not-leak")
    with pytest.raises(SecretUnavailableError) as caught:
        get_secret(not_json, key="api_key")
    assert "must-not-leak" not in caught.value.message
    assert caught.value.__suppress_context__


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_powertools_client_follows_the_region_and_endpoint_variables(
    aws_credentials: None, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a secret behind a Secrets Manager endpoint in eu-west-1 (moto as a server)
    name = f"spine/providers/endpoint-{uuid.uuid4().hex}"
    boto3.client("secretsmanager", endpoint_url=moto_server, region_name="eu-west-1").create_secret(
        Name=name, SecretString="sk-served"
    )
    # When the standard variables point there, Powertools' reads go there
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # as set by Lambda, read by botocore too
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server)
    assert get_secret(name) == "sk-served"
    assert aws_client("secretsmanager").meta.region_name == "eu-west-1"
    # When they change, the next read follows them: no stale client or cache is used
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(SecretUnavailableError) as caught:
        get_secret(name)
    assert caught.value.message.endswith("(ConnectionRefusedError).")
