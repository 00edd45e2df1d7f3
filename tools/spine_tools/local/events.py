"""HTTP request -> API Gateway REST proxy event (payload 1.0), and a Lambda proxy
result -> HTTP response, with the gateway's own error answers.

The event has the keys and nesting of a real REST API event (see
tests/local/fixtures/apigw_rest_event.json): single- and multi-value headers and
query parameters (the single-value form keeps the last value), `null` for absent
maps and bodies, a `requestContext` with the stage-prefixed path.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from spine_tools.local.intrinsics import LOCAL_ACCOUNT_ID
from spine_tools.local.routing import RouteMatch
from spine_tools.local.template import GatewayResponse

# A fixed, obviously fake API id: clients see it in requestContext and domain names.
LOCAL_API_ID = "1234567890"
# API Gateway refuses larger payloads before the function runs.
MAX_REQUEST_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # percent-decoded, without the query string
    query_string: str = ""
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    server_port: int = 3000
    scheme: str = "http"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class MalformedProxyResult(ValueError):
    """The handler returned something API Gateway cannot turn into a response."""


def gateway_error(status: int, message: str, error_type: str, request_id: str) -> HttpResponse:
    """API Gateway's own JSON error answer, e.g. 403 Missing Authentication Token."""
    return HttpResponse(
        status=status,
        headers=[
            ("content-type", "application/json"),
            ("x-amzn-requestid", request_id),
            ("x-amzn-errortype", error_type),
        ],
        body=json.dumps({"message": message}).encode(),
    )


def missing_authentication_token(request_id: str) -> HttpResponse:
    return gateway_error(
        403, "Missing Authentication Token", "MissingAuthenticationTokenException", request_id
    )


# The response types of API Gateway's own answers, most specific first.
GATEWAY_RESPONSE_TYPES = {
    403: ("MISSING_AUTHENTICATION_TOKEN", "DEFAULT_4XX"),
    413: ("REQUEST_TOO_LARGE", "DEFAULT_4XX"),
    502: ("INTEGRATION_FAILURE", "DEFAULT_5XX"),
    504: ("INTEGRATION_TIMEOUT", "DEFAULT_5XX"),
}


def customized(
    answer: HttpResponse,
    responses: Mapping[str, GatewayResponse],
    *,
    request: HttpRequest,
    request_id: str,
) -> HttpResponse:
    """API Gateway's own answer as the template's `GatewayResponses` shape it (status,
    headers, body template with $context variables), else as it is."""
    kinds = GATEWAY_RESPONSE_TYPES.get(answer.status, ())
    spec = next((responses[kind] for kind in kinds if kind in responses), None)
    if spec is None:
        return answer
    message = json.loads(answer.body).get("message", "") if answer.body else ""
    context = {
        "$context.requestId": request_id,
        "$context.httpMethod": request.method,
        "$context.path": request.path,
        "$context.error.messageString": json.dumps(message),
        "$context.error.message": message,
    }
    body = answer.body
    if spec.template is not None:
        text = spec.template
        for name in sorted(context, key=len, reverse=True):  # messageString before message
            text = text.replace(name, context[name])
        body = text.encode()
    headers = [(k, v) for k, v in answer.headers if k != "content-type"]
    headers.append(("content-type", "application/json"))
    for name, expression in spec.headers.items():
        if expression.startswith("'") and expression.endswith("'"):
            headers.append((name.lower(), expression[1:-1]))
        elif expression.startswith("context."):
            headers.append((name.lower(), context.get("$" + expression, "")))
    return HttpResponse(status=spec.status or answer.status, headers=headers, body=body)


def internal_server_error(request_id: str) -> HttpResponse:
    return gateway_error(502, "Internal server error", "InternalServerErrorException", request_id)


def endpoint_timed_out(request_id: str) -> HttpResponse:
    return gateway_error(504, "Endpoint request timed out", "IntegrationTimeout", request_id)


def request_too_large(request_id: str) -> HttpResponse:
    return gateway_error(
        413,
        f"HTTP content length exceeded {MAX_REQUEST_BYTES} bytes",
        "RequestTooLarge",
        request_id,
    )


def _single_and_multi(
    pairs: Sequence[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not pairs:
        return None, None
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    return {key: values[-1] for key, values in multi.items()}, multi


def _is_binary(content_type: str, body: bytes, binary_media_types: Sequence[str]) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type and any(fnmatch.fnmatch(media_type, t.lower()) for t in binary_media_types):
        return True
    # API Gateway would mangle non-UTF-8 bytes into text; base64 keeps them intact.
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def build_event(
    request: HttpRequest,
    match: RouteMatch | None,
    *,
    stage: str,
    request_id: str | None = None,
    binary_media_types: Sequence[str] = (),
    stage_variables: Mapping[str, str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The proxy event API Gateway sends for `request` on the matched resource."""
    now = time.time() if now is None else now
    request_id = request_id or str(uuid.uuid4())
    header_pairs = list(request.headers)
    present = {name.lower() for name, _ in header_pairs}
    # What sam local adds; API Gateway adds the same names for its own hop.
    if "x-forwarded-proto" not in present:
        header_pairs.append(("X-Forwarded-Proto", request.scheme))
    if "x-forwarded-port" not in present:
        header_pairs.append(("X-Forwarded-Port", str(request.server_port)))
    headers, multi_headers = _single_and_multi(header_pairs)
    query, multi_query = _single_and_multi(parse_qsl(request.query_string, keep_blank_values=True))
    lowered = {name.lower(): value for name, value in header_pairs}
    host = lowered.get("host", f"127.0.0.1:{request.server_port}")
    body: str | None = None
    is_base64 = False
    if request.body:
        is_base64 = _is_binary(lowered.get("content-type", ""), request.body, binary_media_types)
        body = (
            base64.b64encode(request.body).decode("ascii")
            if is_base64
            else request.body.decode("utf-8")
        )
    resource = match.route.path if match else request.path
    requested_at = datetime.fromtimestamp(now, tz=UTC)
    return {
        "resource": resource,
        "path": request.path,
        "httpMethod": request.method.upper(),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": (match.path_parameters or None) if match else None,
        "stageVariables": dict(stage_variables) if stage_variables else None,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": LOCAL_API_ID,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "extendedRequestId": base64.b64encode(secrets.token_bytes(12)).decode("ascii"),
            "httpMethod": request.method.upper(),
            "identity": {
                "accessKey": None,
                "accountId": None,
                "apiKey": None,
                "apiKeyId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": request.source_ip,
                "user": None,
                "userAgent": lowered.get("user-agent"),
                "userArn": None,
            },
            # Unlike the event's `path`, this one carries the stage.
            "path": f"/{stage}{request.path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": requested_at.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": _resource_id(resource),
            "resourcePath": resource,
            "stage": stage,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _resource_id(resource: str) -> str:
    # Stable per resource, as API Gateway's ids are; the value itself means nothing.
    return uuid.uuid5(uuid.NAMESPACE_URL, resource).hex[:6]


def proxy_response(result: Any, request_id: str) -> HttpResponse:
    """The HTTP response API Gateway makes of a Lambda proxy result."""
    if not isinstance(result, dict):
        raise MalformedProxyResult(f"result is {type(result).__name__}, not an object")
    status = result.get("statusCode")
    try:
        status_code = int(status)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise MalformedProxyResult(f"statusCode {status!r} is not an integer") from exc
    if not 100 <= status_code <= 599:
        raise MalformedProxyResult(f"statusCode {status_code} is not an HTTP status")
    headers = _result_headers(result.get("headers"), result.get("multiValueHeaders"))
    headers.append(("x-amzn-requestid", request_id))
    return HttpResponse(status_code, headers, _result_body(result))


def _result_headers(single: Any, multi: Any) -> list[tuple[str, str]]:
    if single is not None and not isinstance(single, dict):
        raise MalformedProxyResult("headers must be an object")
    if multi is not None and not isinstance(multi, dict):
        raise MalformedProxyResult("multiValueHeaders must be an object")
    pairs: list[tuple[str, str]] = []
    for name, values in (multi or {}).items():
        if not isinstance(values, list):
            raise MalformedProxyResult(f"multiValueHeaders[{name!r}] must be a list")
        pairs.extend((str(name), _header_value(v)) for v in values)
    # Both forms merge into one list; a pair given in both appears once.
    seen = {(name.lower(), value) for name, value in pairs}
    for name, value in (single or {}).items():
        text = _header_value(value)
        if (str(name).lower(), text) not in seen:
            pairs.append((str(name), text))
    return pairs


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _result_body(result: dict[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedProxyResult(f"body is {type(body).__name__}, not a string")
    if result.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedProxyResult("isBase64Encoded but body is not base64") from exc
    return body.encode("utf-8")
