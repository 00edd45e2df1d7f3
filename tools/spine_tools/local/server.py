"""The emulator of `sam local start-api`: one ASGI app serving every Api event.

Each request is matched against the template's routes, turned into a REST proxy
event, handed to a free container of the function (never run on the server's own
event loop), and the proxy result turned back into the HTTP response (a function
behind Lambda Web Adapter in streaming mode is relayed chunk by chunk instead: see
`spine_tools.local.streaming`), with API
Gateway's answers where the gateway itself would answer: 403 for an unknown route
or method, 502 when the handler raises or returns a malformed result or Lambda
times it out, 504 when the gateway's own integration timeout passes first.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from spine_tools.local import events
from spine_tools.local.admin_assets import admin_routes, default_dist
from spine_tools.local.environment import EnvironmentPlan, function_environment, patched_environ
from spine_tools.local.event_sources import EventSources
from spine_tools.local.events import HttpRequest, HttpResponse
from spine_tools.local.intrinsics import LocalResource
from spine_tools.local.routing import RouteMatch, RouteTable
from spine_tools.local.runtime import (
    DEFAULT_POOL_SIZE,
    Failed,
    FunctionRuntime,
    Succeeded,
    TimedOut,
)
from spine_tools.local.streaming import StreamedInvocation
from spine_tools.local.template import Template

logger = logging.getLogger("spine_tools.local")

# API Gateway REST's default integration timeout.
GATEWAY_TIMEOUT_SECONDS = 29.0
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class Emulator:
    """The functions of one template, their containers and their routes."""

    def __init__(
        self,
        template: Template,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        env_vars: Mapping[str, Mapping[str, str]] | None = None,
        gateway_timeout: float = GATEWAY_TIMEOUT_SECONDS,
        admin_dist: Path | None = None,
        aws_endpoint: str | None = None,
        aws_resources: Mapping[str, LocalResource] | None = None,
        time_scale: float = 1.0,
    ) -> None:
        """With `aws_endpoint` (where `aws_resources`, the template's queues and
        buckets, were made), the template's SQS event sources and schedules run too,
        every schedule's rate multiplied by `time_scale`."""
        self.template = template
        # The admin web app's build, served under /admin/ (spine_tools.local.admin_assets).
        self.admin_dist = admin_dist if admin_dist is not None else default_dist(template.path)
        self.routes = RouteTable.from_template(template)
        self.gateway_timeout = gateway_timeout
        self.environment = EnvironmentPlan.build(
            {
                logical_id: function_environment(spec, env_vars)
                for logical_id, spec in template.functions.items()
            }
        )
        self.runtimes = {
            logical_id: FunctionRuntime(
                spec,
                pool_size=pool_size,
                import_environment=self.environment.per_function[logical_id],
            )
            for logical_id, spec in template.functions.items()
        }
        self.event_sources = (
            EventSources(self.runtimes, aws_resources or {}, aws_endpoint, time_scale=time_scale)
            if aws_endpoint
            else None
        )
        self._exit_stack = contextlib.ExitStack()

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Apply the functions' shared environment to this process (see runtime)."""
        # Libraries tell Lambda by LAMBDA_TASK_ROOT's presence (Powertools' async batch
        # processor then runs on the container's loop rather than a new one per
        # invocation): present at run time too, whatever each function's value.
        in_lambda = {"LAMBDA_TASK_ROOT": str(self.template.path.parent.resolve())}
        self._exit_stack.enter_context(patched_environ(in_lambda | self.environment.shared))
        per_function = self.environment.conflicting_keys()
        if per_function:
            logger.info("variables set only while each function loads: %s", per_function)
        if self.event_sources is not None:
            self.event_sources.start()

    def warm(self) -> None:
        """Load every function now (`--warm-containers EAGER`); failures are logged and
        retried on the function's first request."""
        for logical_id, runtime in self.runtimes.items():
            try:
                runtime.load()
            except Exception:
                logger.exception("function %s failed to load", logical_id)

    def close(self) -> None:
        if self.event_sources is not None:
            self.event_sources.stop()  # before the containers its invocations use
        for runtime in self.runtimes.values():
            runtime.close()
        self._exit_stack.close()

    async def handle(self, request: HttpRequest) -> HttpResponse:
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        match = self.routes.match(request.method, request.path)
        response = await self._respond(request, match, request_id)
        if response.headers and ("x-amzn-errortype" in dict(response.headers)):
            # API Gateway's own answer: shaped by the API's GatewayResponses, as deployed.
            response = self.gateway_answer(response, request, request_id, match)
        logger.info(
            "%s %s -> %d %s %.0f ms",
            request.method,
            request.path,
            response.status,
            match.route.function if match else "(no route)",
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def _respond(
        self, request: HttpRequest, match: RouteMatch | None, request_id: str
    ) -> HttpResponse:
        if len(request.body) > events.MAX_REQUEST_BYTES:
            return events.request_too_large(request_id)
        if match is None:
            return events.missing_authentication_token(request_id)
        runtime = self.runtimes[match.route.function]
        event = self._event(request, match, request_id)
        outcome = await runtime.invoke_async(event, self.gateway_timeout)
        if isinstance(outcome, Succeeded):
            try:
                return events.proxy_response(outcome.result, request_id)
            except events.MalformedProxyResult as exc:
                logger.error(
                    "function %s: malformed proxy result: %s", runtime.spec.logical_id, exc
                )
                return events.internal_server_error(request_id)
        if isinstance(outcome, TimedOut) and outcome.by_gateway:
            return events.endpoint_timed_out(request_id)
        assert isinstance(outcome, Failed | TimedOut)
        return events.internal_server_error(request_id)

    def _event(self, request: HttpRequest, match: RouteMatch, request_id: str) -> dict[str, Any]:
        api = self.template.apis[match.route.api_id]
        return events.build_event(
            request,
            match,
            stage=api.stage,
            request_id=request_id,
            binary_media_types=api.binary_media_types,
            stage_variables=api.stage_variables,
        )

    def streamed(self, request: HttpRequest) -> StreamedInvocation | None:
        """The streamed answer when the request goes to a response-streaming function
        (Lambda Web Adapter); None for everything `handle` answers."""
        match = self.routes.match(request.method, request.path)
        if match is None or len(request.body) > events.MAX_REQUEST_BYTES:
            return None
        runtime = self.runtimes[match.route.function]
        if not runtime.spec.response_streaming:
            return None
        request_id = str(uuid.uuid4())
        return StreamedInvocation(
            runtime,
            request,
            self._event(request, match, request_id),
            request_id,
            self.gateway_timeout,
            gateway_answer=lambda answer: self.gateway_answer(answer, request, request_id, match),
        )

    def gateway_answer(
        self,
        answer: HttpResponse,
        request: HttpRequest,
        request_id: str,
        match: RouteMatch | None,
    ) -> HttpResponse:
        """`answer` as the API's `GatewayResponses` shape it (the matched route's API;
        for no route, the template's only, or first, API)."""
        if match is not None:
            api = self.template.apis.get(match.route.api_id)
        else:
            api = next(iter(self.template.apis.values()), None)
        if api is None:
            return answer
        return events.customized(
            answer, api.gateway_responses, request=request, request_id=request_id
        )

    def route_lines(self, base_url: str) -> list[str]:
        """`Mounting ChatFunction at http://127.0.0.1:3000/v1/chat/completions [POST]`."""
        by_resource: dict[tuple[str, str], list[str]] = {}
        for route in self.routes.routes:
            by_resource.setdefault((route.function, route.path), []).append(route.method)
        return [
            f"Mounting {function} at {base_url}{path} [{', '.join(sorted(methods))}]"
            for (function, path), methods in sorted(by_resource.items(), key=lambda i: i[0][1])
        ]

    def asgi_app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            server = request.scope.get("server") or ("127.0.0.1", 3000)
            http_request = HttpRequest(
                method=request.method,
                # scope["path"] is already percent-decoded, as API Gateway's `path` is.
                path=request.scope["path"],
                query_string=request.scope.get("query_string", b"").decode("latin-1"),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                body=await request.body(),
                source_ip=request.client.host if request.client else "127.0.0.1",
                server_port=int(server[1] or 0),
                scheme=request.scope.get("scheme", "http"),
            )
            streamed = self.streamed(http_request)
            if streamed is not None:
                return streamed
            return _to_starlette(await self.handle(http_request))

        return Starlette(
            routes=[
                *admin_routes(self.admin_dist),
                Route("/{path:path}", endpoint, methods=HTTP_METHODS),
            ]
        )


def _to_starlette(response: HttpResponse) -> Response:
    result = Response(content=response.body, status_code=response.status)
    # Repeated names survive (Set-Cookie, multiValueHeaders); length is ours.
    result.raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1", "replace"))
        for name, value in response.headers
        if name.lower() != "content-length"
    ] + [(b"content-length", str(len(response.body)).encode())]
    return result


def make_server(emulator: Emulator, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        emulator.asgi_app(),
        host=host,
        port=port,
        lifespan="off",
        # The emulator logs each request itself, with the function that served it.
        access_log=False,
        log_config=None,
    )
    return uvicorn.Server(config)
