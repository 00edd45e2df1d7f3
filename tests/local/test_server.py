"""The emulator over real HTTP: uvicorn on a free loopback port, httpx as the client."""

import asyncio
import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from spine_tools.local.events import HttpRequest
from spine_tools.local.server import Emulator, make_server
from spine_tools.local.template import load_template
from tests.fixtures.servers import serving

FIXTURES = Path(__file__).parent / "fixtures"
POOL_SIZE = 2


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(load_template(FIXTURES / "template.yaml"), pool_size=POOL_SIZE) as emu:
        yield emu


@pytest.fixture(scope="module")
def base_url(emulator: Emulator) -> Iterator[str]:
    with serving(make_server(emulator, "127.0.0.1", 0)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=20) as http:
        yield http


def test_path_parameters_and_query_strings(client: httpx.Client) -> None:
    response = client.get("/echo/abc", params=[("q", "1"), ("q", "2"), ("one", "x y")])
    assert response.status_code == 201
    event = response.json()["event"]
    assert event["resource"] == "/echo/{id}"
    assert event["path"] == "/echo/abc"
    assert event["pathParameters"] == {"id": "abc"}
    assert event["queryStringParameters"] == {"q": "2", "one": "x y"}
    assert event["multiValueQueryStringParameters"] == {"q": ["1", "2"], "one": ["x y"]}
    assert event["requestContext"]["stage"] == "test"
    assert event["requestContext"]["path"] == "/test/echo/abc"
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"


def test_literal_route_beats_parameter(client: httpx.Client) -> None:
    event = client.get("/echo/special").json()["event"]
    assert event["resource"] == "/echo/special"
    assert event["pathParameters"] is None


def test_greedy_path_parameter(client: httpx.Client) -> None:
    event = client.delete("/files/org/model/v1.gguf").json()["event"]
    assert event["resource"] == "/files/{path+}"
    assert event["httpMethod"] == "DELETE"
    assert event["pathParameters"] == {"path": "org/model/v1.gguf"}


def test_repeated_request_and_response_headers(client: httpx.Client) -> None:
    response = client.get("/echo", headers=[("X-Rep", "a"), ("X-Rep", "b")])
    event = response.json()["event"]
    assert event["multiValueHeaders"]["x-rep"] == ["a", "b"]
    assert event["headers"]["x-rep"] == "b"
    assert event["headers"]["X-Forwarded-Port"] == str(client.base_url.port)
    assert response.headers.get_list("x-multi") == ["a", "b"]
    assert response.headers["x-single"] == "one"
    assert response.headers.get_list("set-cookie") == ["c1=1", "c2=2"]
    assert response.headers["x-amzn-requestid"] == event["requestContext"]["requestId"]


def test_text_body_and_context(client: httpx.Client) -> None:
    payload = client.post("/echo", json={"hello": "wörld"}).json()
    assert payload["event"]["body"] == '{"hello":"wörld"}'
    assert payload["event"]["isBase64Encoded"] is False
    context = payload["context"]
    assert context["function_name"] == "EchoFunction"
    assert context["memory_limit_in_mb"] == "256"
    assert context["invoked_function_arn"].endswith(":function:EchoFunction")
    assert context["log_group_name"] == "/aws/lambda/EchoFunction"
    assert 0 < context["remaining_ms"] <= 5000


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream"])
def test_binary_body_round_trip(client: httpx.Client, content_type: str) -> None:
    # image/png is a binary media type of the API; other bytes are not valid UTF-8.
    raw = bytes(range(256)) * 4
    response = client.post("/files/blob", content=raw, headers={"content-type": content_type})
    assert response.status_code == 200
    assert response.content == raw


def test_environment_shared_and_per_function(client: httpx.Client) -> None:
    payload = client.get("/echo").json()
    env = payload["env"]
    assert env["FIXTURE_GREETING"] == "hello"
    assert env["FIXTURE_SUB"] == "hello-us-east-1"
    assert env["FIXTURE_IF"] == "yes"
    assert "FIXTURE_NO_DEFAULT" not in env  # parameter without a value: left unset
    assert "FIXTURE_NO_VALUE" not in env  # !Ref AWS::NoValue
    # /opt is the layer's mount point; locally it maps to the layer's source folder.
    assert Path(env["FIXTURE_FILE"]).read_text().strip() == "loaded from the fixture layer"
    # FIXTURE_ROLE differs between functions: set while each one loads, not after.
    assert "FIXTURE_ROLE" not in env
    assert payload["import_env"]["FIXTURE_ROLE"] == "echo"
    assert payload["import_env"]["AWS_LAMBDA_FUNCTION_NAME"] == "EchoFunction"
    slow = client.get("/slow").json()
    assert slow["role"] == "slow"  # same file, its own module and environment


def test_unknown_route_and_wrong_method_are_403(client: httpx.Client) -> None:
    for response in (client.get("/nowhere"), client.put("/echo"), client.get("/files")):
        assert response.status_code == 403
        assert response.json() == {"message": "Missing Authentication Token"}


def test_handler_exception_is_502(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("ERROR", logger="spine_tools.local"):
        response = client.get("/boom")
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert "the fixture exploded" in caplog.text  # the traceback is logged


def test_malformed_result_is_502(client: httpx.Client) -> None:
    response = client.get("/malformed")
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_function_timeout_is_502(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.get("/sleepy")
    assert response.status_code == 502
    assert 0.9 < time.monotonic() - started < 2.4  # the 1 s Timeout, not the 2.5 s sleep


def test_gateway_timeout_is_504() -> None:
    template = load_template(FIXTURES / "template.yaml")
    with Emulator(template, pool_size=1, gateway_timeout=0.3) as emulator:

        async def two_requests() -> list[int]:
            # The second waits for the only container, and the gateway gives up on both.
            responses = await asyncio.gather(
                emulator.handle(HttpRequest("GET", "/sleepy")),
                emulator.handle(HttpRequest("GET", "/sleepy")),
            )
            return [r.status for r in responses]

        started = time.monotonic()
        assert asyncio.run(two_requests()) == [504, 504]
        assert time.monotonic() - started < 2.0  # well before the 2.5 s sleeps end


def test_fastapi_app_behind_mangum(client: httpx.Client) -> None:
    response = client.get("/api/items/org/model-x", params=[("tag", "a"), ("tag", "b")])
    assert response.status_code == 200
    assert response.json() == {"item": "org/model-x", "tags": ["a", "b"]}
    response = client.post("/api/echo", json={"n": 1})
    assert response.json() == {"json": {"n": 1}, "root_path": ""}


def test_containers_limit_concurrency(base_url: str) -> None:
    # Given a pool of 2 containers; When 6 requests arrive at once
    def call(_: int) -> dict[str, object]:
        with httpx.Client(base_url=base_url, timeout=20) as http:
            response = http.get("/slow")
            assert response.status_code == 200
            return dict(response.json())

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(call, range(6)))
    elapsed = time.monotonic() - started
    # Then never more than 2 run at once, and they do run 2 at a time
    assert max(int(str(r["peak"])) for r in results) == POOL_SIZE
    assert elapsed > 0.85  # three waves of 0.3 s (peak == 2 shows they overlap)
    # And each container keeps one event loop of its own across requests
    loops: dict[str, set[object]] = {}
    for result in results:
        loops.setdefault(str(result["thread"]), set()).add(result["loop"])
    assert len(loops) <= POOL_SIZE
    assert all(len(ids) == 1 for ids in loops.values())
    assert len({next(iter(ids)) for ids in loops.values()}) == len(loops)


# --- response streaming (Lambda Web Adapter) ----------------------------------------------


def test_streamed_function_relays_chunks_as_they_are_sent(base_url: str) -> None:
    # Given a web-adapter function that sends a tick every 0.3 s
    arrivals: list[float] = []
    with httpx.Client(base_url=base_url, timeout=20) as http:
        started = time.monotonic()
        with http.stream("GET", "/stream", params={"n": "4", "gap": "0.3"}) as response:
            # When the client reads the response as it comes
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            ticks = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.monotonic() - started)
                    ticks.append(line.removeprefix("data: "))
    # Then every tick arrives when it is sent, not all at the end
    assert ticks == ["0", "1", "2", "3"]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap > 0.2 for gap in gaps), arrivals
    # And the app saw API Gateway's request id, as Mangum and the adapter pass it
    rid = response.headers["x-amzn-requestid"]
    assert response.headers["x-event-request-id"] == rid == response.headers["x-context-request-id"]


def test_streamed_function_sees_the_client_go_away(base_url: str) -> None:
    def state() -> dict[str, int]:
        return dict(httpx.get(base_url + "/stream/state", timeout=10).json())

    before = state()
    # Given a long stream; When the client leaves after the first tick
    with (
        httpx.Client(base_url=base_url, timeout=20) as http,
        http.stream("GET", "/stream", params={"n": "50", "gap": "0.2"}) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: "):
                break
    # Then the app is told at once (http.disconnect) and stops sending
    deadline = time.monotonic() + 5
    while state()["disconnected"] == before["disconnected"]:
        assert time.monotonic() < deadline, "the app never saw the disconnect"
        time.sleep(0.05)
    assert state()["finished"] == before["finished"]


def test_streamed_function_send_waits_for_the_client(base_url: str) -> None:
    def sent() -> int:
        return int(httpx.get(base_url + "/stream/state", timeout=10).json()["sent"])

    # Given a stream far larger than the socket buffers (200 ticks of 256 KiB)
    ticks, size = 200, 256 * 1024
    before = sent()
    with (
        httpx.Client(base_url=base_url, timeout=20) as http,
        http.stream("GET", "/stream", params={"n": ticks, "gap": "0", "size": size}) as response,
    ):
        # When the client reads nothing for a while
        time.sleep(1.0)
        # Then the app's send has not run ahead of the client (it returns once the chunk
        # is written, as uvicorn's does), so the emulator holds no unbounded backlog
        assert sent() - before < ticks / 2
        # And once the client reads, everything arrives
        received = sum(len(part) for part in response.iter_bytes())
    assert received >= ticks * size
    assert sent() - before == ticks


def test_streamed_function_invoked_with_an_event_is_buffered(emulator: Emulator) -> None:
    # `spine invoke` and direct event invocations go through the adapter's buffered form.
    response = asyncio.run(emulator.handle(HttpRequest("GET", "/stream", query_string="n=3&gap=0")))
    assert response.status == 200
    assert response.body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
