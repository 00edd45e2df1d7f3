"""Routing as API Gateway does it, and events with API Gateway's exact shape."""

import base64
import json
from pathlib import Path

import pytest

from spine_tools.local.events import HttpRequest, MalformedProxyResult, build_event, proxy_response
from spine_tools.local.routing import Route, RouteTable

RECORDED_EVENT = json.loads(
    (Path(__file__).parent / "fixtures" / "apigw_rest_event.json").read_text()
)


def _table() -> RouteTable:
    return RouteTable(
        Route(method, path, function, "Api", "test")
        for method, path, function in [
            ("GET", "/v1/models", "Models"),
            ("GET", "/v1/models/{model+}", "Models"),
            ("GET", "/v1/models/{model}/info", "Info"),
            ("GET", "/v1/models/special", "Special"),
            ("ANY", "/files/{path+}", "Files"),
            ("POST", "/files/upload", "Upload"),
        ]
    )


@pytest.mark.parametrize(
    ("method", "path", "function", "params"),
    [
        ("GET", "/v1/models", "Models", {}),
        ("GET", "/v1/models/", "Models", {}),  # empty segments are ignored
        ("GET", "/v1/models/gpt-5", "Models", {"model": "gpt-5"}),
        ("GET", "/v1/models/org/sub/model", "Models", {"model": "org/sub/model"}),
        ("GET", "/v1/models/special", "Special", {}),  # literal beats a parameter
        ("GET", "/v1/models/x/info", "Info", {"model": "x"}),  # parameter beats greedy
        ("DELETE", "/files/a/b", "Files", {"path": "a/b"}),  # ANY
        ("POST", "/files/upload", "Upload", {}),
    ],
)
def test_route_matching(method: str, path: str, function: str, params: dict[str, str]) -> None:
    match = _table().match(method, path)
    assert match is not None
    assert match.route.function == function
    assert match.path_parameters == params


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/v1/models"),  # the resource exists, the method does not
        ("GET", "/files"),  # a greedy parameter needs at least one segment
        ("GET", "/files/upload"),  # the most specific resource decides: no GET there
    ],
)
def test_no_route(method: str, path: str) -> None:
    assert _table().match(method, path) is None


def _shape(value: object) -> object:
    """Key structure of the fixed-shape parts of an event (maps of names -> None)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return None


def test_event_has_the_recorded_api_gateway_shape() -> None:
    # Given the request behind the recorded event
    request = HttpRequest(
        method="GET",
        path="/pets/42",
        query_string="color=red&color=blue",
        headers=[("Accept", "application/json"), ("X-Tag", "first"), ("X-Tag", "second")],
        source_ip="198.51.100.7",
    )
    table = RouteTable([Route("GET", "/pets/{petId}", "Pets", "Api", "prod")])
    # When the emulator builds its event
    event = build_event(request, table.match("GET", "/pets/42"), stage="prod")
    # Then every key (and nested key of requestContext) is the recorded one
    assert set(event) == set(RECORDED_EVENT)
    assert _shape(event["requestContext"]) == _shape(RECORDED_EVENT["requestContext"])
    for key in ("resource", "path", "httpMethod", "pathParameters", "stageVariables", "body"):
        assert event[key] == RECORDED_EVENT[key], key
    assert event["queryStringParameters"] == RECORDED_EVENT["queryStringParameters"]
    assert (
        event["multiValueQueryStringParameters"]
        == RECORDED_EVENT["multiValueQueryStringParameters"]
    )
    assert event["headers"]["X-Tag"] == "second"  # the last of repeated values
    assert event["multiValueHeaders"]["X-Tag"] == ["first", "second"]
    context = event["requestContext"]
    assert context["path"] == "/prod/pets/42"
    assert context["resourcePath"] == "/pets/{petId}"
    assert context["identity"]["sourceIp"] == "198.51.100.7"
    assert isinstance(context["requestTimeEpoch"], int)
    assert context["requestTimeEpoch"] > 1_600_000_000_000  # milliseconds


def test_event_without_query_headers_or_body_uses_nulls() -> None:
    event = build_event(HttpRequest("GET", "/x"), None, stage="Prod")
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False


def test_binary_body_is_base64() -> None:
    raw = bytes(range(256))
    event = build_event(
        HttpRequest("POST", "/x", headers=[("Content-Type", "image/png")], body=b"PNG..."),
        None,
        stage="Prod",
        binary_media_types=["image/png"],
    )
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"PNG..."
    event = build_event(HttpRequest("POST", "/x", body=raw), None, stage="Prod")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw
    event = build_event(HttpRequest("POST", "/x", body='{"a": "é"}'.encode()), None, stage="P")
    assert event == event | {"isBase64Encoded": False, "body": '{"a": "é"}'}


def test_proxy_response_merges_header_forms() -> None:
    response = proxy_response(
        {
            "statusCode": 202,
            "headers": {"a": "1", "b": "x"},
            "multiValueHeaders": {"b": ["x", "y"], "c": ["z"]},
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
        },
        "req-1",
    )
    assert response.status == 202
    assert response.body == b"\x00\x01"
    pairs = [(k, v) for k, v in response.headers if k != "x-amzn-requestid"]
    assert sorted(pairs) == [("a", "1"), ("b", "x"), ("b", "y"), ("c", "z")]


@pytest.mark.parametrize(
    "result",
    [
        None,
        "text",
        {"body": "no status"},
        {"statusCode": "abc"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "body": "***", "isBase64Encoded": True},
    ],
)
def test_malformed_proxy_results(result: object) -> None:
    with pytest.raises(MalformedProxyResult):
        proxy_response(result, "req-1")
