"""template.yaml's live models.yaml and provider-key secrets: the parameters reach
the functions' settings, and IAM grants exactly the reads they need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from spine.settings import load_settings
from spine_tools.local.template import load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
DB_ARN = "arn:aws:secretsmanager:eu-west-1:000000000000:secret:spine-db-AbCdEf"
# BatchesFunction: a native batch's cancel goes to its provider.
PROVIDER_CALLERS = {
    "ChatFunction",
    "PromptsFunction",
    "CapabilitiesFunction",
    "SessionsFunction",
    "BatchesFunction",
}


def settings_of(function: str, overrides: dict[str, str]) -> Any:
    deployed = {"DatabaseUrlSecretArn": DB_ARN, "WorkerUrl": "https://worker.example"}
    template = load_template(TEMPLATE, {**deployed, **overrides})
    env = dict(template.functions[function].environment)
    return load_settings(REPO / "config.toml", environ=env).models, env


def test_no_live_source_leaves_config_toml_in_charge() -> None:
    models, env = settings_of("ModelsFunction", {})
    assert "SPINE_MODELS__SOURCE" not in env
    assert models.source == "file"


def test_bucket_parameters_reach_the_settings() -> None:
    models, _ = settings_of(
        "ChatFunction", {"ModelsBucket": "1234", "ModelsKey": "prod/models.yaml"}
    )
    assert models.source == "s3"
    # A numeric-looking name stays a string (the template quotes it)
    assert (models.s3.bucket, models.s3.key) == ("1234", "prod/models.yaml")
    assert models.live_ttl_seconds == 30


def test_appconfig_ids_reach_the_settings() -> None:
    models, _ = settings_of(
        "UsageFunction",
        {
            "ModelsAppConfigApplicationId": "abc1234",
            "ModelsAppConfigEnvironmentId": "1234567",
            "ModelsAppConfigProfileId": "1e10aaa",
            "ModelsTtlSeconds": "45",
        },
    )
    assert models.source == "appconfig"
    assert (models.appconfig.application, models.appconfig.environment) == ("abc1234", "1234567")
    assert models.appconfig.profile == "1e10aaa"
    assert models.live_ttl_seconds == 45


def _resources() -> dict[str, Any]:
    template, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return dict(template["Resources"])


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of a managed policy, each unwrapped from its Fn::If."""
    result = []
    for item in policy["Properties"]["PolicyDocument"]["Statement"]:
        result.append(item["Fn::If"][1] if "Fn::If" in item else item)
    return result


def test_models_policy_grants_exactly_the_object_and_the_profile() -> None:
    resources = _resources()
    s3, appconfig = _statements(resources["ModelsConfigReadPolicy"])
    assert s3["Action"] == "s3:GetObject"
    assert s3["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelsBucket}/${ModelsKey}"}
    assert sorted(appconfig["Action"]) == [
        "appconfig:GetLatestConfiguration",
        "appconfig:StartConfigurationSession",
    ]
    assert appconfig["Resource"]["Fn::Sub"].endswith(
        ":application/${ModelsAppConfigApplicationId}/environment/${ModelsAppConfigEnvironmentId}"
        "/configuration/${ModelsAppConfigProfileId}"
    )
    [secrets] = _statements(resources["ProviderSecretsReadPolicy"])
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    assert secrets["Resource"]["Fn::Sub"].endswith(":secret:${ProviderSecretsPrefix}*")


def test_every_function_reads_the_live_models_and_only_callers_read_provider_keys() -> None:
    # Functions that serve the API; the scheduled maintenance reads no models.
    functions = {
        name: resource
        for name, resource in _resources().items()
        if resource["Type"] == "AWS::Serverless::Function"
        and any(e["Type"] == "Api" for e in resource["Properties"].get("Events", {}).values())
    }
    assert set(functions) >= PROVIDER_CALLERS
    for name, function in functions.items():
        refs = {
            str(policy["Fn::If"][1]["Ref"])
            for policy in function["Properties"]["Policies"]
            if isinstance(policy, dict)
            and "Fn::If" in policy
            and isinstance(policy["Fn::If"][1], dict)
            and "Ref" in policy["Fn::If"][1]
        }
        assert "ModelsConfigReadPolicy" in refs, name
        assert ("ProviderSecretsReadPolicy" in refs) == (name in PROVIDER_CALLERS), name
