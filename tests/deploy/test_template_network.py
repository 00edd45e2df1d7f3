"""Optional VPC placement of every function (SubnetIds, SecurityGroupIds), read from
the template after the SAM transform, as CloudFormation deploys it."""

from __future__ import annotations

from typing import Any

VPC_CONFIG = {
    "Fn::If": [
        "HasVpc",
        {"SubnetIds": {"Ref": "SubnetIds"}, "SecurityGroupIds": {"Ref": "SecurityGroupIds"}},
        {"Ref": "AWS::NoValue"},
    ]
}
VPC_ACCESS = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"


def lambda_functions(cloudformation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in cloudformation["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def test_vpc_parameters_are_optional_lists(cloudformation: dict[str, Any]) -> None:
    parameters = cloudformation["Parameters"]
    for name in ("SubnetIds", "SecurityGroupIds"):
        assert parameters[name]["Type"] == "CommaDelimitedList"
        assert parameters[name]["Default"] == ""
    # No subnets: no VPC (the condition is false for the default)
    assert cloudformation["Conditions"]["HasVpc"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SubnetIds"}]}, ""]}]
    }


def test_every_function_joins_the_vpc_when_subnets_are_given(
    cloudformation: dict[str, Any],
) -> None:
    functions = lambda_functions(cloudformation)
    assert "MigrationsFunction" in functions and "ChatFunction" in functions
    for name, function in functions.items():
        # Then its VpcConfig follows the parameters, and its role may create the ENIs
        assert function["Properties"]["VpcConfig"] == VPC_CONFIG, name
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        policies = cloudformation["Resources"][role]["Properties"]["ManagedPolicyArns"]
        assert VPC_ACCESS in policies, name


def test_subnets_without_security_groups_are_refused(cloudformation: dict[str, Any]) -> None:
    rule = cloudformation["Rules"]["VpcNeedsSecurityGroups"]
    assert rule["RuleCondition"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SubnetIds"}]}, ""]}]
    }
    [assertion] = rule["Assertions"]
    assert assertion["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SecurityGroupIds"}]}, ""]}]
    }
