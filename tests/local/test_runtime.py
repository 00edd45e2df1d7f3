"""Environment planning, the Lambda context and direct invocations."""

import os
from pathlib import Path

from spine_tools.local.environment import EnvironmentPlan, function_environment, read_env_vars_file
from spine_tools.local.runtime import Failed, FunctionRuntime, Succeeded, TimedOut
from spine_tools.local.server import Emulator
from spine_tools.local.template import load_template

FIXTURES = Path(__file__).parent / "fixtures"


def test_plan_splits_shared_and_conflicting_variables() -> None:
    plan = EnvironmentPlan.build(
        {"A": {"SAME": "1", "ROLE": "a", "ONLY_A": "x"}, "B": {"SAME": "1", "ROLE": "b"}}
    )
    assert plan.shared == {"SAME": "1", "ONLY_A": "x"}
    assert plan.per_function == {"A": {"ROLE": "a"}, "B": {"ROLE": "b"}}
    assert plan.conflicting_keys() == ["ROLE"]


def test_emulator_sets_then_restores_the_process_environment() -> None:
    template = load_template(FIXTURES / "template.yaml")
    assert "FIXTURE_SUB" not in os.environ
    with Emulator(template) as emulator:
        assert os.environ["FIXTURE_SUB"] == "hello-us-east-1"
        assert os.environ["AWS_SAM_LOCAL"] == "true"
        assert "FIXTURE_ROLE" in emulator.environment.conflicting_keys()
        assert "FIXTURE_ROLE" not in os.environ
    assert "FIXTURE_SUB" not in os.environ


def test_env_vars_file_overrides_declared_variables_only(tmp_path: Path) -> None:
    spec = load_template(FIXTURES / "template.yaml").functions["EchoFunction"]
    path = tmp_path / "env.json"
    path.write_text(
        '{"Parameters": {"FIXTURE_GREETING": "hey", "UNDECLARED": "1"},'
        ' "EchoFunction": {"FIXTURE_ROLE": "override"}, "SlowFunction": {"FIXTURE_IF": "x"}}'
    )
    env = function_environment(spec, read_env_vars_file(path))
    assert env["FIXTURE_GREETING"] == "hey"
    assert env["FIXTURE_ROLE"] == "override"
    assert env["FIXTURE_IF"] == "yes"  # another function's override
    assert "UNDECLARED" not in env  # as sam local: only template variables
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "EchoFunction"


def test_direct_invocations() -> None:
    template = load_template(FIXTURES / "template.yaml")
    event = {"path": "/echo", "httpMethod": "GET", "isBase64Encoded": False}
    echo = FunctionRuntime(template.functions["EchoFunction"], pool_size=1)
    boom = FunctionRuntime(template.functions["BoomFunction"], pool_size=1)
    sleepy = FunctionRuntime(template.functions["SleepyFunction"], pool_size=1)
    try:
        outcome = echo.invoke(event)
        assert isinstance(outcome, Succeeded)
        assert outcome.result["statusCode"] == 201
        failed = boom.invoke({"path": "/boom"})
        assert isinstance(failed, Failed)
        assert failed.as_lambda_error()["errorType"] == "RuntimeError"
        timed_out = sleepy.invoke({})
        assert isinstance(timed_out, TimedOut)
        assert "Task timed out after 1.00 seconds" in timed_out.as_lambda_error()["errorMessage"]
    finally:
        for runtime in (echo, boom, sleepy):
            runtime.close()


def test_missing_module_fails_the_invocation_not_the_emulator(tmp_path: Path) -> None:
    template_path = tmp_path / "template.yaml"
    template_path.write_text(
        "Resources:\n  Ghost:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: nowhere/, Handler: app.handler, Runtime: python3.12}\n"
    )
    runtime = FunctionRuntime(load_template(template_path).functions["Ghost"])
    try:
        outcome = runtime.invoke({})
        assert isinstance(outcome, Failed)
        assert outcome.error_type == "ImportError"
    finally:
        runtime.close()
