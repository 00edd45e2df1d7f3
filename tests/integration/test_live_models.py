"""A deployed function's live models.yaml: the real models handler reading S3 (moto)
or AppConfig (wire fake), configured by environment as template.yaml does."""

from __future__ import annotations

import boto3
import pytest

from tests.fakes.appconfigdata_api import AppConfigDataFake
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway

BUCKET = "spine-live-config"
KEY = "prod/models.yaml"


def live_source(monkeypatch: pytest.MonkeyPatch, source: str, **settings: str) -> None:
    monkeypatch.setenv("SPINE_MODELS__SOURCE", source)
    # Check on every request, in the request: the TTL itself is tested in tests/aws.
    monkeypatch.setenv("SPINE_MODELS__LIVE_TTL_SECONDS", "0")
    monkeypatch.setenv("SPINE_MODELS__BACKGROUND_REFRESH", "false")
    for name, value in settings.items():
        monkeypatch.setenv(f"SPINE_MODELS__{name.upper()}", value)


def status(gateway: Gateway, key: str, model: str) -> int:
    return gateway.request("GET", f"/v1/models/{model}", key=key).status


@pytest.fixture
def s3_models(env: Env, moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    live_source(monkeypatch, "s3", s3__bucket=BUCKET, s3__key=KEY)
    return env.models_path.read_text()


def upload(text: str) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=text.encode())


def test_operator_upload_reaches_the_warm_function_and_a_bad_one_never_does(
    s3_models: str, gateway: Gateway, api_key: str
) -> None:
    # Given a function started on the S3 object (which differs from the packaged file)
    upload(s3_models.replace("id: gpt-test", "id: gpt-live"))
    assert status(gateway, api_key, "gpt-live") == 200
    assert status(gateway, api_key, "gpt-test") == 404
    # When the operator uploads an edit that fails validation
    upload(s3_models.replace("id: gpt-test", "id: gpt-broken").replace("input: 0.15", "input: -1"))
    # Then the warm function keeps serving the last good config
    assert status(gateway, api_key, "gpt-broken") == 404
    assert status(gateway, api_key, "gpt-live") == 200
    # When the operator uploads a fix, it is served without a redeploy
    upload(s3_models.replace("id: gpt-test", "id: gpt-fixed"))
    assert status(gateway, api_key, "gpt-fixed") == 200
    assert status(gateway, api_key, "gpt-live") == 404


def test_function_starts_on_the_packaged_file_when_s3_has_no_object(
    s3_models: str, gateway: Gateway, api_key: str
) -> None:
    # Given no object in the bucket: the packaged models.yaml serves
    assert status(gateway, api_key, "gpt-test") == 200
    # And the first upload is picked up by the same warm function
    upload(s3_models.replace("id: gpt-test", "id: gpt-uploaded"))
    assert status(gateway, api_key, "gpt-uploaded") == 200


def test_chat_function_uses_the_live_registry(
    s3_models: str, gateway: Gateway, env: Env, api_key: str
) -> None:
    upload(s3_models.replace("model: gpt-4o-mini", "model: gpt-4.1-nano"))
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        key=api_key,
    )
    assert result.status == 200, result.body
    assert env.fakes.last("openai").json["model"] == "gpt-4.1-nano"


def test_appconfig_deployment_reaches_the_warm_function(
    env: Env,
    appconfigdata: AppConfigDataFake,
    gateway: Gateway,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live_source(
        monkeypatch,
        "appconfig",
        appconfig__application="spine",
        appconfig__environment="prod",
        appconfig__profile="models",
    )
    original = env.models_path.read_text()
    appconfigdata.deploy("spine", "prod", "models", original.replace("id: gpt-test", "id: gpt-ac"))
    assert status(gateway, api_key, "gpt-ac") == 200
    appconfigdata.deploy("spine", "prod", "models", "version: 1\nmodels: []\n")
    assert status(gateway, api_key, "gpt-ac") == 200
    appconfigdata.deploy("spine", "prod", "models", original.replace("id: gpt-test", "id: gpt-ac2"))
    assert status(gateway, api_key, "gpt-ac2") == 200
