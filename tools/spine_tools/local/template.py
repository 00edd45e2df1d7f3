"""Read a SAM template into the functions and routes the emulator serves.

The YAML loader accepts CloudFormation's short tags (`!Ref`, `!Sub`, `!GetAtt`, ...)
and turns them into their long forms (`{"Ref": ...}`, `{"Fn::Sub": ...}`), so the
same resolver handles both spellings. `Globals.Function` is merged into each
function as SAM does: maps merge key by key, lists are concatenated (globals first),
scalars in the function win.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spine_tools.local.intrinsics import NO_VALUE, UNRESOLVED, LocalResource, Resolver

FUNCTION_TYPE = "AWS::Serverless::Function"
LAYER_TYPE = "AWS::Serverless::LayerVersion"
API_TYPE = "AWS::Serverless::Api"
# The resources `spine local` makes in its embedded AWS (spine_tools.local.aws).
QUEUE_TYPE = "AWS::SQS::Queue"
BUCKET_TYPE = "AWS::S3::Bucket"
# The REST API SAM creates for `Api` events that name no RestApiId, and its stage.
IMPLICIT_API = "ServerlessRestApi"
IMPLICIT_STAGE = "Prod"
# Lambda Web Adapter's exec wrapper (from its layer), and the variable that names the
# ASGI app its startup script serves, "module:attribute" (template.yaml, run.sh).
WEB_ADAPTER_WRAPPER = "/opt/bootstrap"
ASGI_APP_VARIABLE = "SPINE_ASGI_APP"
# Lambda's own defaults when neither the function nor Globals set them.
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128


class TemplateError(Exception):
    """The template cannot be read or does not describe what the emulator serves."""


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's short-form intrinsic tags."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # `!GetAtt Res.Attr` is the short form of `Fn::GetAtt: [Res, Attr]`.
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{tag_suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _construct_tag)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.load(text, Loader=_CloudFormationLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return data


@dataclass(frozen=True)
class ApiEvent:
    name: str
    method: str  # upper case; ANY matches every method
    path: str  # API Gateway resource path, e.g. /v1/models/{model+}
    api_id: str  # logical id of the REST API


@dataclass(frozen=True)
class SqsEvent:
    """An SQS event source: the emulator polls `queue` (a logical id) and invokes the
    function with SQS events, as Lambda's event source mapping does."""

    name: str
    queue: str
    batch_size: int = 10
    batching_window_seconds: float = 0.0
    # FunctionResponseTypes: [ReportBatchItemFailures]: only the reported messages
    # stay on the queue; without it a failed invocation keeps the whole batch.
    report_item_failures: bool = False
    # ScalingConfig.MaximumConcurrency: invocations at once for this source.
    max_concurrency: int = 2


@dataclass(frozen=True)
class ScheduleEvent:
    """A ScheduleV2 event: `rate(...)` or `cron(...)`, with its Input (JSON text)."""

    name: str
    expression: str
    input: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    code_dir: Path
    handler: str  # "module.function", module may be dotted ("pkg.mod.fn")
    runtime: str
    memory_mb: int
    timeout_seconds: float
    environment: Mapping[str, str]  # resolved; unresolvable variables left out
    layer_dirs: tuple[Path, ...]  # local content of the template's own layers
    events: tuple[ApiEvent, ...]
    sqs_events: tuple[SqsEvent, ...] = ()
    schedules: tuple[ScheduleEvent, ...] = ()

    @property
    def web_adapter(self) -> bool:
        """Served through AWS Lambda Web Adapter: `Handler` is its startup script, and
        the web app it runs is the ASGI app named by SPINE_ASGI_APP."""
        return self.environment.get("AWS_LAMBDA_EXEC_WRAPPER") == WEB_ADAPTER_WRAPPER

    @property
    def entry(self) -> tuple[str, str]:
        """(module, attribute) the emulator imports: the Lambda handler, or the ASGI
        app of a web-adapter function."""
        if self.web_adapter:
            module, _, attribute = self.environment.get(ASGI_APP_VARIABLE, "").partition(":")
            return module, attribute
        module, _, attribute = self.handler.rpartition(".")
        return module, attribute

    @property
    def module_name(self) -> str:
        return self.entry[0]

    @property
    def handler_name(self) -> str:
        return self.entry[1]

    @property
    def module_path(self) -> Path:
        return self.code_dir / (self.module_name.replace(".", "/") + ".py")

    @property
    def response_streaming(self) -> bool:
        """Lambda Web Adapter in streaming mode: the emulator relays the app's response
        chunks as they are sent instead of buffering a proxy result."""
        return (
            self.web_adapter
            and self.environment.get("AWS_LWA_INVOKE_MODE", "").lower() == "response_stream"
        )


@dataclass(frozen=True)
class GatewayResponse:
    """An Api's `GatewayResponses` entry: what API Gateway answers itself."""

    status: int | None
    headers: Mapping[str, str]  # name -> mapping expression ('literal' or context.x)
    template: str | None  # the application/json body template


@dataclass(frozen=True)
class ApiSpec:
    logical_id: str
    stage: str
    binary_media_types: tuple[str, ...]
    stage_variables: Mapping[str, str] | None
    gateway_responses: Mapping[str, GatewayResponse] = field(default_factory=dict)


@dataclass(frozen=True)
class Template:
    path: Path
    parameters: Mapping[str, str]
    functions: Mapping[str, FunctionSpec]
    apis: Mapping[str, ApiSpec]
    # Logical id -> type (QUEUE_TYPE or BUCKET_TYPE) and properties, as written.
    aws_resources: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)

    def function(self, name: str) -> FunctionSpec:
        """Look a function up by logical id (or by its FunctionName)."""
        if name in self.functions:
            return self.functions[name]
        for spec in self.functions.values():
            if spec.function_name == name:
                return spec
        raise KeyError(name)


def load_template(
    path: Path | str,
    parameter_overrides: Mapping[str, str] | None = None,
    local_resources: Mapping[str, LocalResource] | None = None,
) -> Template:
    """The template with its parameters; `local_resources` are the local stand-ins of its
    queues and buckets (their `Ref` and `GetAtt` values), once made."""
    path = Path(path)
    data = load_yaml(path)
    resolver = Resolver(
        parameters=_parameter_values(data, parameter_overrides or {}),
        conditions=data.get("Conditions") or {},
        resources=local_resources or {},
    )
    base_dir = path.parent
    resources: dict[str, Any] = data["Resources"]
    globals_ = data.get("Globals") or {}
    layers = {
        logical_id: (base_dir / str(resolver.resolve(res["Properties"]["ContentUri"]))).resolve()
        for logical_id, res in resources.items()
        if res.get("Type") == LAYER_TYPE
        and isinstance(resolver.resolve(res.get("Properties", {}).get("ContentUri")), str)
    }
    functions = {
        logical_id: _function_spec(
            logical_id,
            resource=res,
            global_props=globals_.get("Function") or {},
            resolver=resolver,
            base_dir=base_dir,
            layers=layers,
        )
        for logical_id, res in resources.items()
        if res.get("Type") == FUNCTION_TYPE
    }
    apis = _api_specs(resources, globals_.get("Api") or {}, resolver, functions)
    aws = {
        logical_id: (str(res["Type"]), res.get("Properties") or {})
        for logical_id, res in resources.items()
        if res.get("Type") in (QUEUE_TYPE, BUCKET_TYPE)
    }
    return Template(path, resolver.parameters, functions, apis, aws)


def _parameter_values(data: dict[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    declared: dict[str, Any] = data.get("Parameters") or {}
    unknown = set(overrides) - set(declared)
    if unknown:
        raise TemplateError(f"parameter overrides name undeclared parameters: {sorted(unknown)}")
    values = {
        name: _stringify(spec["Default"])
        for name, spec in declared.items()
        if isinstance(spec, dict) and "Default" in spec
    }
    values.update(overrides)
    return values


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_stringify(v) for v in value)
    return str(value)


def _merged(global_props: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    merged = dict(global_props)
    for key, value in props.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = _merged(base, value)
        elif isinstance(base, list) and isinstance(value, list):
            merged[key] = base + value
        else:
            merged[key] = value
    return merged


def _function_spec(
    logical_id: str,
    *,
    resource: dict[str, Any],
    global_props: dict[str, Any],
    resolver: Resolver,
    base_dir: Path,
    layers: Mapping[str, Path],
) -> FunctionSpec:
    props = _merged(global_props, resource.get("Properties") or {})
    handler = resolver.resolve(props.get("Handler"))
    code_uri = resolver.resolve(props.get("CodeUri"))
    if not isinstance(handler, str) or "." not in handler:
        raise TemplateError(f"{logical_id}: Handler must be 'module.function', got {handler!r}")
    if not isinstance(code_uri, str):
        raise TemplateError(f"{logical_id}: CodeUri must be a local folder, got {code_uri!r}")
    name = resolver.resolve(props.get("FunctionName"))
    variables = (props.get("Environment") or {}).get("Variables") or {}
    environment = {
        key: _stringify(value)
        for key, value in ((k, resolver.resolve(v)) for k, v in variables.items())
        if value is not UNRESOLVED and value is not NO_VALUE
    }
    layer_dirs = tuple(
        layers[ref["Ref"]]
        for ref in props.get("Layers") or []
        if isinstance(ref, dict) and ref.get("Ref") in layers
    )
    events = tuple(
        ApiEvent(
            name=event_name,
            method=str(event["Properties"]["Method"]).upper(),
            path=str(event["Properties"]["Path"]),
            api_id=_api_id(event["Properties"].get("RestApiId")),
        )
        for event_name, event in (props.get("Events") or {}).items()
        if event.get("Type") == "Api"
    )
    all_events = (props.get("Events") or {}).items()
    sqs_events = tuple(
        _sqs_event(logical_id, name, resolver.resolve(event.get("Properties") or {}), event)
        for name, event in all_events
        if event.get("Type") == "SQS"
    )
    schedules = tuple(
        _schedule_event(name, resolver.resolve(event.get("Properties") or {}))
        for name, event in all_events
        if event.get("Type") == "ScheduleV2"
    )
    if environment.get("AWS_LAMBDA_EXEC_WRAPPER") == WEB_ADAPTER_WRAPPER:
        module, _, attribute = environment.get(ASGI_APP_VARIABLE, "").partition(":")
        if not module or not attribute:
            raise TemplateError(
                f"{logical_id}: a Lambda Web Adapter function needs {ASGI_APP_VARIABLE} "
                "('module:attribute' of the ASGI app its startup script serves)"
            )
    return FunctionSpec(
        logical_id=logical_id,
        function_name=name if isinstance(name, str) else logical_id,
        code_dir=(base_dir / code_uri).resolve(),
        handler=handler,
        runtime=str(resolver.resolve(props.get("Runtime")) or ""),
        memory_mb=int(resolver.resolve(props.get("MemorySize")) or DEFAULT_MEMORY_MB),
        timeout_seconds=float(resolver.resolve(props.get("Timeout")) or DEFAULT_TIMEOUT_SECONDS),
        environment=environment,
        layer_dirs=layer_dirs,
        events=events,
        sqs_events=sqs_events,
        schedules=schedules,
    )


def _sqs_event(
    function: str, name: str, props: Mapping[str, Any], raw: Mapping[str, Any]
) -> SqsEvent:
    # The queue is named by its ARN (`!GetAtt Queue.Arn`); locally, by its logical id.
    queue = (raw.get("Properties") or {}).get("Queue")
    if not (isinstance(queue, dict) and "Fn::GetAtt" in queue):
        raise TemplateError(f"{function}.{name}: Queue must be !GetAtt <Queue>.Arn")
    scaling = props.get("ScalingConfig") or {}
    return SqsEvent(
        name=name,
        queue=str(queue["Fn::GetAtt"][0]),
        batch_size=int(props.get("BatchSize", 10)),
        batching_window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
        report_item_failures="ReportBatchItemFailures"
        in (props.get("FunctionResponseTypes") or []),
        max_concurrency=int(scaling.get("MaximumConcurrency", 2)),
    )


def _schedule_event(name: str, props: Mapping[str, Any]) -> ScheduleEvent:
    state = str(props.get("State", "ENABLED")).upper()
    text = props.get("Input")
    return ScheduleEvent(
        name=name,
        expression=str(props.get("ScheduleExpression", "")),
        input=text if isinstance(text, str) else None,
        enabled=state != "DISABLED",
    )


def _api_id(rest_api_id: Any) -> str:
    if rest_api_id is None:
        return IMPLICIT_API
    if isinstance(rest_api_id, dict) and "Ref" in rest_api_id:
        return str(rest_api_id["Ref"])
    raise TemplateError(f"RestApiId must be a !Ref to an API in this template: {rest_api_id!r}")


def _gateway_responses(raw: Mapping[str, Any]) -> dict[str, GatewayResponse]:
    responses = {}
    for kind, spec in raw.items():
        headers = (spec.get("ResponseParameters") or {}).get("Headers") or {}
        templates = spec.get("ResponseTemplates") or {}
        status = spec.get("StatusCode")
        responses[str(kind)] = GatewayResponse(
            status=int(status) if status is not None else None,
            headers={str(k): str(v) for k, v in headers.items()},
            template=templates.get("application/json"),
        )
    return responses


def _api_specs(
    resources: dict[str, Any],
    global_props: dict[str, Any],
    resolver: Resolver,
    functions: Mapping[str, FunctionSpec],
) -> dict[str, ApiSpec]:
    apis: dict[str, ApiSpec] = {}
    for logical_id, res in resources.items():
        if res.get("Type") != API_TYPE:
            continue
        props = resolver.resolve(_merged(global_props, res.get("Properties") or {}))
        variables = props.get("Variables")
        apis[logical_id] = ApiSpec(
            logical_id=logical_id,
            stage=str(props.get("StageName", IMPLICIT_STAGE)),
            # OpenAPI escapes '/' as '~1' in binary media types (image~1png).
            binary_media_types=tuple(
                str(t).replace("~1", "/") for t in props.get("BinaryMediaTypes") or []
            ),
            stage_variables={k: str(v) for k, v in variables.items()} if variables else None,
            gateway_responses=_gateway_responses(props.get("GatewayResponses") or {}),
        )
    used = {event.api_id for spec in functions.values() for event in spec.events}
    if IMPLICIT_API in used:
        apis[IMPLICIT_API] = ApiSpec(IMPLICIT_API, IMPLICIT_STAGE, (), None)
    unknown = used - set(apis)
    if unknown:
        raise TemplateError(f"Api events reference unknown APIs: {sorted(unknown)}")
    return apis
