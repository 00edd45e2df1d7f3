"""Tracing of the chat function behind Lambda Web Adapter: the app, in a process of
its own as under the adapter (with the adapter's variables and the X-Ray daemon
address Lambda sets), gets a request carrying the invocation's trace header; the real
X-Ray SDK sends the request's subsegment, with the chat path's annotations, in that
trace, to a UDP listener standing in for the daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Env

REPO = Path(__file__).resolve().parents[2]
TRACE_ID = "1-67a0b1c2-0123456789abcdef01234567"
PARENT_ID = "53995c3f42cd8ad8"

# The chat entry module served like uvicorn serves it, one request through ASGI.
_ONE_REQUEST = """
import asyncio, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("chat_entry", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

async def main():
    # A raw ASGI call, as uvicorn makes it: an HTTP client in this process would be
    # patched by the X-Ray SDK and replace the trace header with its own.
    body = sys.argv[2].encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", ("Bearer " + sys.argv[3]).encode()),
        (b"x-amzn-trace-id", sys.argv[4].encode()),
        (b"x-amzn-request-context", json.dumps({"requestId": "req-traced"}).encode()),
    ]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await module.app(scope, receive, send)
    print(status[0])

asyncio.run(main())
"""


def received_documents(sock: socket.socket) -> list[dict[str, Any]]:
    """The segment documents the SDK sent: a JSON header line, then the document."""
    documents = []
    sock.settimeout(2)
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return documents
        header, _, body = data.decode().partition("\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        documents.append(json.loads(body))


@pytest.fixture
def daemon() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def run_behind_adapter(env: Env, api_key: str, daemon: socket.socket, **extra: str) -> str:
    port = daemon.getsockname()[1]
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_SAM_LOCAL", "POWERTOOLS_TRACE_DISABLED")
    }
    environment = {
        **inherited,
        "AWS_LAMBDA_FUNCTION_NAME": "spine-ChatFunction",
        "LAMBDA_TASK_ROOT": str(REPO / "functions" / "chat"),
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{port}",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_REGION": "us-east-1",
        **extra,
    }
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "traced"}]}
    header = f"Root={TRACE_ID};Parent={PARENT_ID};Sampled=1"
    result = subprocess.run(
        [sys.executable, "-c", _ONE_REQUEST, str(REPO / "functions" / "chat" / "app.py"),
         json.dumps(body), api_key, header],
        env=environment, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_chat_request_is_a_subsegment_of_the_invocations_trace(
    env: Env, api_key: str, daemon: socket.socket
) -> None:
    # When the chat app behind the adapter serves a request of a traced invocation
    status = run_behind_adapter(env, api_key, daemon)
    assert status == "200"
    # Then the daemon got the request's subsegment in that trace, under the
    # function's segment, annotated by the chat path
    documents = received_documents(daemon)
    requests = [d for d in documents if d.get("name") == "## POST /v1/chat/completions"]
    assert len(requests) == 1, documents
    [request] = requests
    assert request["trace_id"] == TRACE_ID
    assert request["parent_id"] == PARENT_ID
    assert request["type"] == "subsegment"
    annotations = request["annotations"]
    assert annotations["path"] == "/v1/chat/completions"
    assert annotations["status"] == "200"
    assert annotations.get("model") == "gpt-test", annotations


def test_no_trace_is_sent_when_tracing_is_off(
    env: Env, api_key: str, daemon: socket.socket
) -> None:
    status = run_behind_adapter(env, api_key, daemon, POWERTOOLS_TRACE_DISABLED="true")
    assert status == "200"
    assert received_documents(daemon) == []
