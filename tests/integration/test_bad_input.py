"""Bad input found by an outside test, each now a 4xx in OpenAI's shape naming what is
wrong, storing nothing: NUL characters in stored text and URLs, out-of-range
timestamps, JSON nested past the parser, loosely typed numbers, a stream of the wrong
API; and an unexpected error is a 500 that still carries x-request-id."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import APIRouter

from spine.api.app import create_app
from tests.fakes import Events, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway

HELLO = [{"role": "user", "content": "Say hello"}]
NUL = "bad\x00text"


@pytest.fixture
def admin(env: Env) -> str:
    return env.create_key("ops", scopes=["admin"])


def count(env: Env, table: str) -> int:
    with psycopg.connect(env.db_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("name", NUL, "name"),
        ("tenant", NUL, "tenant"),
        ("principal", NUL, "principal"),
        ("scopes", ["chat", NUL], "scopes[1]"),
        ("tier", NUL, "tier"),
    ],
)
def test_nul_in_a_key_field_is_400_naming_it(
    gateway: Gateway, env: Env, admin: str, field: str, value: Any, param: str
) -> None:
    before = count(env, "api_keys")
    result = gateway.request("POST", "/v1/keys", json_body={"name": "k", field: value}, key=admin)
    assert result.status == 400, result.body
    assert result.error["param"] == param
    assert result.error["code"] == "invalid_characters"
    assert count(env, "api_keys") == before


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"template": NUL}, "template"),
        ({"name": NUL}, "name"),
        ({"description": NUL}, "description"),
        ({"parameters": {"stop": [NUL]}}, "parameters.stop[0]"),
    ],
)
def test_nul_in_a_prompt_field_is_400_naming_it(
    gateway: Gateway, env: Env, admin: str, fields: dict[str, Any], param: str
) -> None:
    body = {"slug": "p", "name": "P", "template": "Hi {{x}}", **fields}
    result = gateway.request("POST", "/v1/prompts", json_body=body, key=admin)
    assert result.status == 400, result.body
    assert result.error["param"] == param
    assert count(env, "prompts") == 0


@pytest.mark.parametrize("query", ["model=gpt%00x", "principal=b%00b", "tenant=%00"])
def test_nul_in_a_query_parameter_is_400(gateway: Gateway, admin: str, query: str) -> None:
    result = gateway.request("GET", "/v1/usage", key=admin, query=query)
    assert result.status == 400, result.body
    assert result.error["code"] == "invalid_characters"
    assert "x-request-id" in result.headers


def test_nul_in_a_path_is_400(gateway: Gateway, admin: str) -> None:
    result = gateway.request("GET", "/v1/prompts/p\x00q", key=admin)
    assert result.status == 400, result.body
    assert result.error["code"] == "invalid_characters"


@pytest.mark.parametrize("expires_at", [253_402_300_800, 2**40 - 1])
def test_a_far_future_expiry_is_400(
    gateway: Gateway, env: Env, admin: str, expires_at: int
) -> None:
    before = count(env, "api_keys")
    result = gateway.request(
        "POST", "/v1/keys", json_body={"name": "k", "expires_at": expires_at}, key=admin
    )
    assert result.status == 400, result.body
    assert result.error["param"] == "expires_at"
    assert count(env, "api_keys") == before
    # The last second Python can hold is fine
    ok = gateway.request(
        "POST", "/v1/keys", json_body={"name": "k", "expires_at": 253_402_300_799}, key=admin
    )
    assert ok.status == 201, ok.body


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/keys"])
def test_json_nested_past_the_parser_is_400(
    gateway: Gateway, env: Env, admin: str, path: str
) -> None:
    deep = "[" * 15_000 + "]" * 15_000
    body = f'{{"model": "gpt-test", "metadata": {deep}}}'.encode()
    result = gateway.request(
        "POST", path, body=body, headers={"Content-Type": "application/json"}, key=admin
    )
    assert result.status == 400, result.body
    assert result.error["code"] == "invalid_json"
    assert env.usage_rows() == []
    assert env.fakes.requests("openai") == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_tokens", "10"), ("max_tokens", True), ("temperature", "0.5"), ("n", 1.0)],
)
def test_numbers_are_not_coerced(
    gateway: Gateway, env: Env, admin: str, field: str, value: Any
) -> None:
    body = {"model": "gpt-test", "messages": HELLO, field: value}
    result = gateway.request("POST", "/v1/chat/completions", json_body=body, key=admin)
    assert result.status == 400, result.body
    assert result.error["param"] == field
    assert env.fakes.requests("openai") == []


COMPATIBLE_MODEL = """\
  - id: compat-test
    provider: openai_compatible
    model: some-model
    base_url: {openai_url}
    context_window: 8000
    capabilities: [chat, completions, streaming]
"""


def test_a_streamed_completion_of_chat_chunks_is_an_upstream_error(env: Env, admin: str) -> None:
    # Given an OpenAI-compatible server that answers /v1/completions with chat chunks
    anchor = "  - id: unconfigured\n"
    env.write_models(
        env.models_path.read_text().replace(
            anchor, COMPATIBLE_MODEL.format(openai_url=env.fakes.openai_url) + anchor
        )
    )
    gateway = Gateway()
    chat_chunks = [openai_api.chunk("some-model", {"content": "Hi"}, "stop")]
    env.fakes.script("openai", *[Events(chat_chunks)] * 3)
    body = {"model": "compat-test", "prompt": "Say hello", "stream": True}
    try:
        result = gateway.request("POST", "/v1/completions", json_body=body, key=admin)
    finally:
        gateway.close()
    # Then it is a 502 naming the problem, as the non-streamed answer of that shape
    assert result.status == 502, result.body
    assert result.error["code"] == "upstream_bad_response"
    assert "'text'" in result.error["message"]
    [row] = env.usage_rows()
    assert row["status"] == "error"


async def test_an_unexpected_error_is_a_500_with_a_request_id(env: Env) -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("a bug")

    app = create_app("health", [router])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://spine") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["x-request-id"].startswith("req_")
    assert json.loads(response.content)["error"]["type"] == "server_error"
    assert "a bug" not in response.text


def test_a_validation_error_names_every_bad_field(gateway: Gateway, admin: str) -> None:
    body = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 3,
        "top_p": -1,
        "max_tokens": "ten",
    }
    result = gateway.request("POST", "/v1/chat/completions", json_body=body, key=admin)
    assert result.status == 400, result.body
    message = result.error["message"]
    for field in ("temperature", "top_p", "max_tokens"):
        assert f"'{field}'" in message, message
    assert result.error["param"] in ("temperature", "top_p", "max_tokens")
    assert "more errors" not in message
