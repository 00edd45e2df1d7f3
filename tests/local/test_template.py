"""template.yaml: lint-clean, and the emulator reads exactly the routes it declares."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

from spine_tools.local.environment import function_environment
from spine_tools.local.routing import RouteTable
from spine_tools.local.samconfig import config_overrides, parse_overrides
from spine_tools.local.template import TemplateError, load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
FIXTURES = Path(__file__).parent / "fixtures"


def _declared_routes(path: Path) -> set[tuple[str, str, str]]:
    """The Api events as cfn-lint's own decoder reads them (independent of ours)."""
    template, problems = decode(str(path))
    assert not problems, problems
    routes = set()
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                props = event["Properties"]
                routes.add((str(props["Method"]).upper(), str(props["Path"]), logical_id))
    return routes


def test_cfn_lint_passes_on_template() -> None:
    # Given the SAM template; When cfn-lint checks it; Then no error and no warning.
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [TEMPLATE, FIXTURES / "template.yaml"])
def test_route_table_equals_template_events(path: Path) -> None:
    emulated = {
        (r.method, r.path, r.function) for r in RouteTable.from_template(load_template(path)).routes
    }
    assert emulated == _declared_routes(path)


def test_template_serves_the_spine_endpoints() -> None:
    routes = {
        (r.method, r.path, r.function)
        for r in RouteTable.from_template(load_template(TEMPLATE)).routes
    }
    assert routes >= {
        ("POST", "/v1/chat/completions", "ChatFunction"),
        ("POST", "/v1/completions", "ChatFunction"),
        ("GET", "/v1/models", "ModelsFunction"),
        ("GET", "/v1/models/{model+}", "ModelsFunction"),
        ("GET", "/v1/usage", "UsageFunction"),
        ("GET", "/v1/pricing", "UsageFunction"),
        ("GET", "/v1/pricing/{model+}", "UsageFunction"),
        ("POST", "/v1/estimate-cost", "UsageFunction"),
        ("GET", "/health", "HealthFunction"),
        ("GET", "/ready", "HealthFunction"),
    }


def test_every_function_has_its_entry_module() -> None:
    template = load_template(TEMPLATE)
    assert template.functions
    for spec in template.functions.values():
        assert spec.module_path.is_file(), spec.module_path
        assert spec.runtime == "python3.12"
        if spec.web_adapter:
            # Lambda Web Adapter runs the startup script, which serves the ASGI app.
            script = spec.code_dir / spec.handler
            assert script.is_file() and os.access(script, os.X_OK), script
            assert spec.entry == ("app", "app")
        else:
            assert spec.handler == "app.handler"


def test_the_streaming_functions_run_behind_the_web_adapter() -> None:
    # Given the deployed template: chat and capabilities stream, the JSON functions do not
    template = load_template(TEMPLATE)
    streaming = {"ChatFunction", "CapabilitiesFunction"}
    raw, problems = decode(str(TEMPLATE))
    assert not problems, problems
    for name in streaming:
        spec = template.functions[name]
        assert spec.response_streaming and spec.handler == "run.sh", name
        # run.sh listens where the adapter forwards to
        assert spec.environment["AWS_LWA_PORT"] and "$AWS_LWA_PORT" in (
            spec.code_dir / "run.sh"
        ).read_text().replace("${AWS_LWA_PORT:-8080}", "$AWS_LWA_PORT")
        # And API Gateway streams the routes' integration responses
        events = raw["Resources"][name]["Properties"]["Events"]
        assert {e["Properties"]["ResponseTransferMode"] for e in events.values()} == {"STREAM"}
    others = [s for s in template.functions.values() if s.logical_id not in streaming]
    assert others and not any(s.web_adapter for s in others)


def test_web_adapter_function_without_asgi_app_is_refused(tmp_path: Path) -> None:
    text = (FIXTURES / "template.yaml").read_text().replace("SPINE_ASGI_APP: app:app", "X: y")
    (tmp_path / "template.yaml").write_text(text)
    with pytest.raises(TemplateError, match="SPINE_ASGI_APP"):
        load_template(tmp_path / "template.yaml")


def test_local_environment_points_at_repository_config() -> None:
    # Given the local parameters of infra/samconfig.toml
    overrides = config_overrides(REPO / "infra" / "samconfig.toml", "local_start_api")
    template = load_template(TEMPLATE, overrides)
    env = function_environment(template.functions["ChatFunction"])
    # Then /opt (the layer) maps to the repository, and development allows loopback.
    assert Path(env["SPINE_CONFIG"]) == REPO / "config.toml"
    assert Path(env["SPINE_MODELS"]) == REPO / "models.yaml"
    assert env["SPINE_SERVICE__ENVIRONMENT"] == "development"
    # Parameters without a local value stay unset, so config.toml's defaults apply.
    assert "SPINE_DATABASE__URL_SECRET" not in env
    assert "SPINE_WORKER__URL" not in env
    assert env["POWERTOOLS_SERVICE_NAME"] == "spine"


def test_deployed_parameters_reach_the_environment() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:000000000000:secret:spine-db-AbCdEf"
    template = load_template(
        TEMPLATE, {"DatabaseUrlSecretArn": arn, "WorkerUrl": "https://worker.example"}
    )
    env = template.functions["HealthFunction"].environment
    assert env["SPINE_DATABASE__URL_SECRET"] == arn
    assert env["SPINE_WORKER__URL"] == "https://worker.example"
    assert env["SPINE_SERVICE__ENVIRONMENT"] == "production"
    assert "SPINE_WORKER__TOKEN_SECRET" not in env  # !If [HasWorkerToken, .., NoValue]


def test_fixture_template_resolves_globals_and_intrinsics() -> None:
    template = load_template(FIXTURES / "template.yaml")
    echo = template.functions["EchoFunction"]
    assert echo.environment == {
        "FIXTURE_GREETING": "hello",
        "FIXTURE_SUB": "hello-us-east-1",
        "FIXTURE_IF": "yes",
        "FIXTURE_FILE": "/opt/layer.txt",
        "FIXTURE_ROLE": "echo",
    }
    assert echo.memory_mb == 256
    assert echo.timeout_seconds == 5
    assert template.functions["SleepyFunction"].timeout_seconds == 1
    assert echo.layer_dirs == ((FIXTURES / "layer").resolve(),)
    assert template.apis["Api"].stage == "test"
    assert template.apis["Api"].binary_media_types == ("image/png",)
    assert template.apis["ServerlessRestApi"].stage == "Prod"
    other = load_template(FIXTURES / "template.yaml", {"Greeting": "hi", "NoDefault": "set"})
    env = other.functions["EchoFunction"].environment
    assert env["FIXTURE_IF"] == "no"
    assert env["FIXTURE_NO_VALUE"] == "kept"
    assert env["FIXTURE_NO_DEFAULT"] == "set"


def test_unknown_parameter_override_is_refused() -> None:
    with pytest.raises(TemplateError, match="Nope"):
        load_template(FIXTURES / "template.yaml", {"Nope": "1"})


def test_parameter_override_spellings() -> None:
    assert parse_overrides("A=1 B='x y' C=") == {"A": "1", "B": "x y", "C": ""}
    assert parse_overrides(["A=1", "B=x y"]) == {"A": "1", "B": "x y"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["novalue"])
