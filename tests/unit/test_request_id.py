"""Which request id keys the usage row: API Gateway's, however the app is invoked."""

import json

from spine.api.middleware import request_id_of


def _scope(headers: list[tuple[bytes, bytes]], event: object = None) -> dict[str, object]:
    scope: dict[str, object] = {"type": "http", "headers": headers}
    if event is not None:
        scope["aws.event"] = event
    return scope


def test_mangum_event_request_id_is_used() -> None:
    scope = _scope([], {"requestContext": {"requestId": "apigw-1"}})
    assert request_id_of(scope) == "apigw-1"


def test_web_adapter_context_header_is_trusted_only_behind_the_adapter() -> None:
    # Given the requestContext header Lambda Web Adapter sets on each request
    header = (b"x-amzn-request-context", json.dumps({"requestId": "apigw-2"}).encode())
    # Then behind the adapter it names the request
    assert request_id_of(_scope([header]), behind_web_adapter=True) == "apigw-2"
    # And elsewhere a client could forge it, so it is ignored
    assert request_id_of(_scope([header])).startswith("req_")


def test_malformed_adapter_header_gets_a_fresh_id() -> None:
    header = (b"x-amzn-request-context", b"{not json")
    assert request_id_of(_scope([header]), behind_web_adapter=True).startswith("req_")
