"""`spine local` (like `sam local start-api`), `spine local generate-event` (like
`sam local generate-event apigateway aws-proxy`) and `spine invoke` (like
`sam local invoke`). Everything heavy is imported inside the handlers."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spine_tools.local.template import Template

logger = logging.getLogger("spine_tools.local")

USAGE_ERROR = 2
# Looked up next to the template when --config-file is not given.
CONFIG_CANDIDATES = ("infra/samconfig.toml", "samconfig.toml")


class _UsageError(Exception):
    """A problem with the command line or its files: message to stderr, exit 2."""


def register(subparsers: Any) -> None:
    local = subparsers.add_parser(
        "local", help="serve template.yaml's functions on :3000 (like sam local start-api)"
    )
    _template_options(local)
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=int, default=3000)
    local.add_argument(
        "--pool-size",
        type=int,
        default=4,
        help="containers per function; a request waits for a free one (default: 4)",
    )
    local.add_argument(
        "--warm-containers",
        choices=["EAGER", "LAZY"],
        default="LAZY",
        help="EAGER: load every function at start; LAZY: on its first request",
    )
    local.add_argument(
        "--aws-endpoint",
        default=os.environ.get("AWS_ENDPOINT_URL") or None,
        help="an S3 + SQS endpoint (moto's server; `spine dev` starts one) where the "
        "template's queues and buckets are made and its SQS event sources and schedules "
        "run (default: AWS_ENDPOINT_URL; without one they do not run)",
    )
    local.set_defaults(handler=_serve, config_command="local_start_api")
    sub = local.add_subparsers(dest="local_command", metavar="ACTION")
    generate = sub.add_parser(
        "generate-event", help="print the API Gateway event a request would produce"
    )
    _template_options(generate)
    generate.add_argument("--method", default="GET")
    generate.add_argument("--path", default="/", help="request path, e.g. /v1/models")
    generate.add_argument("--query", default="", help="query string, e.g. 'a=1&a=2'")
    generate.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'", help="repeatable"
    )
    generate.add_argument("--body", default=None)
    generate.set_defaults(handler=_generate_event, config_command="local_generate_event")

    invoke = subparsers.add_parser(
        "invoke", help="run one function with an event file (like sam local invoke)"
    )
    invoke.add_argument("function", help="logical id in the template, e.g. HealthFunction")
    invoke.add_argument("--event", "-e", required=True, help="event JSON file, '-' for stdin")
    _template_options(invoke)
    invoke.set_defaults(handler=_invoke, config_command="local_invoke")


def _template_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--template", "-t", default="template.yaml", type=Path)
    parser.add_argument(
        "--env-vars", "-n", type=Path, default=None, help="sam-style JSON of variable overrides"
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters (merged over the config file's)",
    )
    parser.add_argument(
        "--config-file",
        type=Path,
        default=None,
        help="samconfig.toml (default: infra/samconfig.toml or samconfig.toml by the template)",
    )
    parser.add_argument("--config-env", default="default")


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
        )


def _load(args: argparse.Namespace, resources: Any = None) -> Template:
    from spine_tools.local import samconfig, template

    template_path: Path = args.template
    if not template_path.is_file():
        raise _UsageError(f"template {template_path} not found (use --template)")
    config_file: Path | None = args.config_file
    if config_file is None:
        found = (template_path.parent / c for c in CONFIG_CANDIDATES)
        config_file = next((c for c in found if c.is_file()), None)
    elif not config_file.is_file():
        raise _UsageError(f"config file {config_file} not found")
    try:
        overrides = (
            samconfig.config_overrides(config_file, args.config_command, args.config_env)
            if config_file is not None
            else {}
        )
        overrides.update(samconfig.parse_overrides(args.parameter_overrides))
        return template.load_template(template_path, overrides, resources)
    except (template.TemplateError, ValueError) as exc:
        raise _UsageError(str(exc)) from exc


def _env_vars(args: argparse.Namespace) -> dict[str, dict[str, str]] | None:
    from spine_tools.local import environment

    if args.env_vars is None:
        return None
    try:
        return environment.read_env_vars_file(args.env_vars)
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc


def _serve(args: argparse.Namespace) -> int:
    _configure_logging()
    try:
        template = _load(args)
        env_vars = _env_vars(args)
    except _UsageError as exc:
        logger.error("%s", exc)
        return USAGE_ERROR
    from spine_tools.local.server import Emulator, make_server

    endpoint: str | None = getattr(args, "aws_endpoint", None)
    resources = None
    if endpoint:
        from spine_tools.local.aws import provision

        resources = provision(template, endpoint)
        template = _load(args, resources)
        logger.info("queues and buckets made at %s: %s", endpoint, ", ".join(resources) or "none")
    with Emulator(
        template,
        pool_size=args.pool_size,
        env_vars=env_vars,
        aws_endpoint=endpoint,
        aws_resources=resources,
    ) as emulator:
        for line in emulator.route_lines(f"http://{args.host}:{args.port}"):
            logger.info("%s", line)
        logger.info("Serving the admin app at http://%s:%s/admin/", args.host, args.port)
        if not emulator.routes.routes:
            logger.warning("the template has no Api events: nothing to serve")
        if args.warm_containers == "EAGER":
            emulator.warm()
        make_server(emulator, args.host, args.port).run()
    return 0


def _generate_event(args: argparse.Namespace) -> int:
    from spine_tools.local import events, routing, template

    headers = []
    for raw in args.header:
        name, sep, value = raw.partition(":")
        if not sep:
            print(f"--header {raw!r}: expected 'NAME: VALUE'", file=sys.stderr)
            return USAGE_ERROR
        headers.append((name.strip(), value.strip()))
    request = events.HttpRequest(
        method=args.method.upper(),
        path=args.path,
        query_string=args.query.lstrip("?"),
        headers=headers,
        body=(args.body or "").encode(),
    )
    stage: str = template.IMPLICIT_STAGE
    match: routing.RouteMatch | None = None
    binary_types: tuple[str, ...] = ()
    if args.template.is_file():  # the event is generic without a template
        try:
            loaded = _load(args)
        except _UsageError as exc:
            print(exc, file=sys.stderr)
            return USAGE_ERROR
        match = routing.RouteTable.from_template(loaded).match(request.method, request.path)
        if match is not None:
            api = loaded.apis[match.route.api_id]
            stage, binary_types = api.stage, api.binary_media_types
    event = events.build_event(request, match, stage=stage, binary_media_types=binary_types)
    print(json.dumps(event, indent=2))
    return 0


def _read_event(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise _UsageError(f"event file {source}: cannot read: {exc.strerror or exc}") from exc
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        name = "stdin" if source == "-" else source
        raise _UsageError(f"event {name}: invalid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise _UsageError("the event must be a JSON object")
    return event


def _invoke(args: argparse.Namespace) -> int:
    _configure_logging()
    try:
        template = _load(args)
        env_vars = _env_vars(args)
        try:
            spec = template.function(args.function)
        except KeyError:
            known = ", ".join(sorted(template.functions)) or "(none)"
            raise _UsageError(
                f"unknown function {args.function!r}; the template has: {known}"
            ) from None
        event = _read_event(args.event)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return USAGE_ERROR
    from spine_tools.local import environment, runtime

    # stdout carries only the result: whatever the function prints or logs (Powertools
    # logs to stdout) goes to stderr, at the file-descriptor level.
    result_out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # One function in this process: its whole environment applies, none conflicts.
    with environment.patched_environ(environment.function_environment(spec, env_vars)):
        function = runtime.FunctionRuntime(spec, pool_size=1)
        try:
            outcome = function.invoke(event)
        finally:
            function.close()
    sys.stdout.flush()
    if isinstance(outcome, runtime.Succeeded):
        result_out.write(json.dumps(outcome.result, default=str) + "\n")
        result_out.close()
        return 0
    result_out.write(json.dumps(outcome.as_lambda_error()) + "\n")
    result_out.close()
    return 1
