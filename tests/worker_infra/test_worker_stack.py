"""infra/worker-ecs.yaml: lint-clean, and the parts that must agree with the worker's
code do: the settings it sets are the worker's settings, the init container runs the
S3 fetch, the scaling metric is the one the worker publishes, under the dimension it
publishes it with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode
from gpu_worker.cloudwatch import METRICS, ModelLoad, metric_data
from gpu_worker.config import ENV_PREFIX, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "infra" / "worker-ecs.yaml"


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    template, problems = decode(str(STACK))
    assert not problems, problems
    resources: dict[str, Any] = template["Resources"]
    return {"template": template, "resources": resources}


def containers(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    task = stack["resources"]["TaskDefinition"]["Properties"]
    return {c["Name"]: c for c in task["ContainerDefinitions"]}


def test_cfn_lint_passes_on_the_worker_stack() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), str(STACK)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gpu_hosts_are_an_autoscaling_group_of_the_ecs_gpu_ami_as_capacity_provider(
    stack: dict[str, Any],
) -> None:
    resources = stack["resources"]
    parameters = stack["template"]["Parameters"]
    assert parameters["GpuAmiId"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert "/ecs/optimized-ami/" in parameters["GpuAmiId"]["Default"]
    assert parameters["GpuAmiId"]["Default"].endswith("/gpu/recommended/image_id")
    launch = resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert launch["ImageId"] == {"Ref": "GpuAmiId"}
    provider = resources["CapacityProvider"]["Properties"]["AutoScalingGroupProvider"]
    assert provider["AutoScalingGroupArn"] == {"Ref": "AutoScalingGroup"}
    assert provider["ManagedScaling"]["Status"] == "ENABLED"
    # ECS may only end instances it emptied
    assert provider["ManagedTerminationProtection"] == "ENABLED"
    assert resources["AutoScalingGroup"]["Properties"]["NewInstancesProtectedFromScaleIn"]
    service = resources["Service"]["Properties"]
    assert service["CapacityProviderStrategy"][0]["CapacityProvider"] == {"Ref": "CapacityProvider"}


def test_worker_starts_only_after_its_models_are_fetched_and_verified(
    stack: dict[str, Any],
) -> None:
    by_name = containers(stack)
    fetch, worker = by_name["model-fetch"], by_name["worker"]
    assert fetch["EntryPoint"] == ["python", "-m", "gpu_worker.s3_models"]
    assert fetch["Essential"] is False
    assert worker["DependsOn"] == [{"ContainerName": "model-fetch", "Condition": "SUCCESS"}]
    # Both see the same models folder; the worker only reads it
    assert fetch["MountPoints"][0]["SourceVolume"] == worker["MountPoints"][0]["SourceVolume"]
    assert worker["MountPoints"][0]["ReadOnly"] is True
    assert worker["ResourceRequirements"] == [{"Type": "GPU", "Value": {"Ref": "GpusPerTask"}}]


def test_every_worker_variable_is_a_worker_setting(stack: dict[str, Any]) -> None:
    fields = {ENV_PREFIX + name.upper() for name in WorkerSettings.model_fields}
    fetch_variables = {"SPINE_WORKER_MODELS_BUCKET", "SPINE_WORKER_MODELS_PREFIX"}
    for container in containers(stack).values():
        names = {v["Name"] for v in container.get("Environment", [])}
        names |= {s["Name"] for s in container.get("Secrets", [])}
        assert names <= fields | fetch_variables, names - fields - fetch_variables


def test_worker_token_comes_from_secrets_manager(stack: dict[str, Any]) -> None:
    worker = containers(stack)["worker"]
    assert worker["Secrets"] == [
        {"Name": "SPINE_WORKER_TOKEN", "ValueFrom": {"Ref": "WorkerTokenSecretArn"}}
    ]
    assert "SPINE_WORKER_TOKEN" not in {v["Name"] for v in worker["Environment"]}
    assert "SPINE_WORKER_INSECURE_NO_AUTH" not in {v["Name"] for v in worker["Environment"]}


def test_every_task_serves_the_stacks_one_model(stack: dict[str, Any]) -> None:
    # Per-model routing: every task behind the load balancer holds the same model and
    # never unloads it, so any task can answer any request the listener forwards
    environment = {v["Name"]: v["Value"] for v in containers(stack)["worker"]["Environment"]}
    assert environment["SPINE_WORKER_DEFAULT_MODEL"] == {"Ref": "ModelId"}
    assert environment["SPINE_WORKER_PRELOAD_DEFAULT"] == "true"
    assert environment["SPINE_WORKER_MAX_LOADED_MODELS"] == "1"
    assert environment["SPINE_WORKER_IDLE_TTL_SECONDS"] == "0"


def test_load_balancer_is_internal_and_reached_by_the_gateway_only(
    stack: dict[str, Any],
) -> None:
    resources = stack["resources"]
    assert resources["LoadBalancer"]["Properties"]["Scheme"] == "internal"
    [ingress] = resources["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress["SourceSecurityGroupId"] == {"Ref": "GatewaySecurityGroupId"}
    [task_ingress] = resources["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert task_ingress["SourceSecurityGroupId"] == {"Ref": "LoadBalancerSecurityGroup"}


def test_autoscaling_tracks_the_queue_depth_the_workers_publish(stack: dict[str, Any]) -> None:
    policy = stack["resources"]["QueueDepthScaling"]["Properties"]
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    environment = {v["Name"]: v["Value"] for v in containers(stack)["worker"]["Environment"]}
    # The namespace and the Service dimension are what the workers put
    assert metric["Namespace"] == environment["SPINE_WORKER_METRICS_NAMESPACE"]
    assert metric["Dimensions"] == [
        {"Name": "Service", "Value": environment["SPINE_WORKER_METRICS_SERVICE"]}
    ]
    assert metric["MetricName"] in METRICS
    assert metric["Statistic"] == "Average"
    published = metric_data("svc", [ModelLoad("m", 1, 1, 1)])
    worker_wide = [d for d in published if d["MetricName"] == metric["MetricName"]]
    assert [{"Name": "Service", "Value": "svc"}] in [d["Dimensions"] for d in worker_wide]
    # The task may put exactly that namespace
    statements = stack["resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    put = next(s for s in statements["Statement"] if s["Action"] == "cloudwatch:PutMetricData")
    assert put["Condition"]["StringEquals"]["cloudwatch:namespace"] == metric["Namespace"]


def test_worker_url_output_is_the_listener(stack: dict[str, Any]) -> None:
    output = stack["template"]["Outputs"]["WorkerUrl"]["Value"]
    assert output == {"Fn::Sub": "http://${LoadBalancer.DNSName}:${ListenerPort}"}
