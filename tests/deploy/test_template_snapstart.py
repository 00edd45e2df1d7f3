"""SnapStart in the template, after the SAM transform: the Mangum functions publish
versions with SnapStart and the API invokes their `live` alias (a snapshot exists only
for a published version); the chat and capabilities functions under Lambda Web
Adapter, the hourly maintenance and the migrations custom resource do not use it."""

from __future__ import annotations

import json
from typing import Any

SNAPSTART = {
    "ModelsFunction",
    "PromptsFunction",
    "SessionsFunction",
    "AuthFunction",
    "UsageFunction",
    "HealthFunction",
    "AdminFunction",
    "BatchesFunction",
}
# The queue consumers too: invoked by their event sources, never behind the API.
WITHOUT = {
    "ChatFunction",
    "CapabilitiesFunction",
    "WorkflowsFunction",
    "MaintenanceFunction",
    "MigrationsFunction",
    "BatchFunction",
}


def test_snapstart_functions_publish_a_live_alias_the_api_invokes(
    cloudformation: dict[str, Any],
) -> None:
    resources = cloudformation["Resources"]
    api_body = json.dumps(resources["Api"]["Properties"]["Body"])
    for name in SNAPSTART:
        assert resources[name]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        alias = resources[f"{name}Aliaslive"]
        assert alias["Type"] == "AWS::Lambda::Alias"
        version = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        assert resources[version]["Type"] == "AWS::Lambda::Version"
        # The API's integrations call the alias, never $LATEST (which has no snapshot)
        assert f"{name}Aliaslive" in api_body, name


def test_functions_that_cannot_use_snapstart_do_not(cloudformation: dict[str, Any]) -> None:
    resources = cloudformation["Resources"]
    for name in WITHOUT:
        assert "SnapStart" not in resources[name]["Properties"], name
    lambdas = {k for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    assert lambdas == SNAPSTART | WITHOUT
