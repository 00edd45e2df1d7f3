"""`stream: true` end to end: the official `openai` client's streaming API against the
local emulator (which serves the chat function the way Lambda Web Adapter does, chunk
by chunk), the real provider SDKs against the wire fakes, and a real Postgres."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from openai.types.chat import ChatCompletionMessageParam

from spine.settings import get_settings
from spine.storage import db
from tests.fakes import Cut, Events, Fail, Hang, Stall
from tests.fixtures.servers import serving
from tests.integration.conftest import Env
from tests.integration.emulator import client, emulator_url, rows_when_written
from tests.integration.gateway import Gateway
from tests.worker.conftest import MODEL_FILE, TOKEN, WorkerProcess, llama_server, model_file

# Fixtures of the emulator and of the worker tests, reused here.
__all__ = ["client", "emulator_url", "llama_server", "model_file"]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]
HOSTED = [("openai", "gpt-test"), ("gemini", "gemini-test"), ("anthropic", "claude-test")]


def body_of(error: openai.APIError) -> dict[str, Any]:
    """The OpenAI error object the SDK read from the response or the `error` event."""
    assert isinstance(error.body, dict), error
    return error.body


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- every provider kind ----------------------------------------------------------------


@pytest.mark.parametrize(("provider", "model"), HOSTED)
def test_openai_client_streams_from_every_hosted_provider(
    client: openai.OpenAI, env: Env, provider: str, model: str
) -> None:
    # When the client streams and asks for usage in the last chunk
    stream = client.chat.completions.create(
        model=model, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    # Then OpenAI's chunks carry the answer and Spine's model id
    assert content_of(chunks) == "echo: Say hello"
    assert {c.model for c in chunks} == {model}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # And only the last chunk has usage, with no choices
    *answer, last = chunks
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0
    assert all(c.usage is None for c in answer)
    # And the usage row agrees with what the client was told
    [row] = rows_when_written(env)
    assert (row["status"], row["http_status"], row["provider"]) == ("ok", 200, provider)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        last.usage.prompt_tokens,
        last.usage.completion_tokens,
    )
    assert row["cost_usd"] > 0
    assert row["metadata"]["stream"] is True and "usage_estimated" not in row["metadata"]


def test_openai_client_streams_from_an_openai_compatible_server(
    client: openai.OpenAI, env: Env
) -> None:
    # Given a model of the `openai_compatible` kind (vLLM, LM Studio, ...): the OpenAI fake
    env.write_models(
        env.models_path.read_text().replace(
            "models:\n",
            "models:\n"
            "  - id: compat-test\n"
            "    provider: openai_compatible\n"
            "    model: gpt-4o-mini\n"
            f"    base_url: {env.fakes.openai_url}\n"
            "    pricing: {input: 0.1, output: 0.2}\n"
            "    context_window: 8000\n"
            "    capabilities: [chat, completions, streaming]\n",
            1,
        )
    )
    # When the client streams chat and text completions
    chunks = list(
        client.chat.completions.create(
            model="compat-test",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = list(client.completions.create(model="compat-test", prompt="Say hi", stream=True))
    # Then both arrive chunk by chunk with Spine's model id, and both are billed exactly
    assert content_of(chunks) == "echo: Say hello"
    assert {c.model for c in chunks} == {"compat-test"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert "".join(c.choices[0].text for c in texts if c.choices) == "echo: Say hi"
    assert env.fakes.last("openai").path == "/v1/completions"  # native text completions
    rows = rows_when_written(env, count=2)
    assert [(r["endpoint"], r["status"], r["provider"]) for r in rows] == [
        ("chat.completions", "ok", "openai_compatible"),
        ("completions", "ok", "openai_compatible"),
    ]
    assert all(r["completion_tokens"] > 0 and r["cost_usd"] > 0 for r in rows)
    assert all("usage_estimated" not in r["metadata"] for r in rows)


def test_usage_is_recorded_when_the_client_does_not_ask_for_it(
    client: openai.OpenAI, env: Env
) -> None:
    chunks = list(client.chat.completions.create(model="gpt-test", messages=HELLO, stream=True))
    # The client gets no usage chunk ...
    assert content_of(chunks) == "echo: Say hello"
    assert all(c.usage is None and c.choices for c in chunks)
    # ... but Spine asked the provider for it, and the ledger has exact counts.
    assert env.fakes.last("openai").json["stream_options"] == {"include_usage": True}
    [row] = rows_when_written(env)
    assert row["status"] == "ok"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (2, 3)
    assert "usage_estimated" not in row["metadata"]


def test_text_completions_stream(client: openai.OpenAI, env: Env) -> None:
    stream = client.completions.create(
        model="gpt-test", prompt="Say hello", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: Say hello"
    assert {c.object for c in chunks} == {"text_completion"}
    assert {c.model for c in chunks} == {"gpt-test"}
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    [row] = rows_when_written(env)
    assert (row["endpoint"], row["status"]) == ("completions", "ok")
    assert row["completion_tokens"] == chunks[-1].usage.completion_tokens


def test_stream_response_headers(emulator_url: str, api_key: str, env: Env) -> None:
    with httpx.stream(
        "POST",
        f"{emulator_url}/v1/chat/completions",
        json={"model": "gpt-test", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    ) as response:
        body = response.read().decode()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-spine-model"] == "gpt-test"
    assert response.headers["x-spine-provider"] == "openai"
    assert body.endswith("data: [DONE]\n\n")
    assert all(e.startswith("data: ") for e in body.split("\n\n") if e)
    # The usage row is keyed by the request id the client saw (API Gateway's).
    [row] = rows_when_written(env)
    assert row["request_id"] == response.headers["x-request-id"]
    assert row["request_id"] == response.headers["x-amzn-requestid"]


# --- timing -----------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "model"), HOSTED)
def test_chunks_reach_the_client_as_the_provider_sends_them(
    client: openai.OpenAI, env: Env, provider: str, model: str
) -> None:
    # Given a provider that goes quiet for 0.8 s after its first event
    env.fakes.script(provider, Stall(after=1, seconds=0.8))
    started = time.monotonic()
    arrivals = []
    for _ in client.chat.completions.create(model=model, messages=HELLO, stream=True):
        arrivals.append(time.monotonic() - started)
    # Then the first chunks arrive before the pause, the rest after it
    assert len(arrivals) >= 2
    assert arrivals[-1] - arrivals[0] >= 0.7, arrivals
    assert arrivals[0] < arrivals[-1] - 0.7, arrivals


# --- failures ---------------------------------------------------------------------------


def test_error_before_the_first_chunk_is_a_plain_error_response(
    client: openai.OpenAI, env: Env
) -> None:
    env.fakes.script("openai", Fail(429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-test", messages=HELLO, stream=True)
    assert caught.value.response.headers["content-type"] == "application/json"
    assert caught.value.response.headers["retry-after"] == "7"
    [row] = rows_when_written(env)
    assert (row["status"], row["http_status"]) == ("error", 429)


@pytest.mark.parametrize(("provider", "model"), HOSTED)
def test_upstream_failure_mid_stream_is_an_error_event_then_done(
    client: openai.OpenAI, env: Env, provider: str, model: str
) -> None:
    # Given a provider that drops the connection after its first events
    env.fakes.script(provider, Cut(after=3 if provider != "gemini" else 1))
    received = []
    # When the client reads the stream, Then the SDK raises on the error event
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model=model, messages=HELLO, stream=True):
            received.append(chunk)
    assert received, "the chunks before the failure reached the client"
    assert body_of(caught.value)["type"] == "upstream_error"
    # And what was generated is billed, estimated, on an error row
    [row] = rows_when_written(env)
    assert (row["status"], row["http_status"]) == ("error", 502)
    assert row["metadata"]["usage_estimated"] is True
    assert row["prompt_tokens"] > 0


def test_error_event_is_openai_shaped_and_followed_by_done(
    emulator_url: str, api_key: str, env: Env
) -> None:
    env.fakes.script(
        "anthropic",
        Events(
            [
                ("message_start", _anthropic_start()),
                (
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                ),
            ],
            done_marker=False,
        ),
    )
    response = httpx.post(
        f"{emulator_url}/v1/chat/completions",
        json={"model": "claude-test", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    name, data = events[-2].split("\n")
    assert name == "event: error"
    error = httpx.Response(200, content=data.removeprefix("data: ")).json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Overloaded" in error["message"]
    [row] = rows_when_written(env)
    assert row["status"] == "error"


def _anthropic_start() -> dict[str, Any]:
    from tests.fakes import anthropic_api

    message = anthropic_api.message("x")
    return {"type": "message_start", "message": {**message, "content": [], "stop_reason": None}}


def test_model_without_streaming_capability_refuses_a_stream(
    client: openai.OpenAI, env: Env
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="unconfigured", messages=HELLO, stream=True)
    assert body_of(caught.value)["param"] == "stream"
    assert env.fakes.requests() == [] and env.usage_rows() == []


def _with_timeouts(env: Env, timeouts: str) -> None:
    text = env.models_path.read_text()
    env.write_models(
        text.replace(
            "    aliases: [gpt-alias]\n", f"    aliases: [gpt-alias]\n    timeouts: {timeouts}\n", 1
        )
    )


def test_first_token_timeout_is_an_error_before_the_stream(client: openai.OpenAI, env: Env) -> None:
    # Given a model that must start answering within 0.5 s, and a provider that does not
    _with_timeouts(env, "{first_token: 0.5, total: 10}")
    env.fakes.script("openai", Hang(5))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-test", messages=HELLO, stream=True)
    # Then the client gets a 504 JSON error after the first-token timeout, not the total
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 3
    [row] = rows_when_written(env)
    assert (row["status"], row["http_status"]) == ("error", 504)


def test_total_timeout_mid_stream_is_an_error_event(client: openai.OpenAI, env: Env) -> None:
    _with_timeouts(env, "{total: 1.0}")
    env.fakes.script("openai", Stall(after=2, seconds=10))
    started = time.monotonic()
    with pytest.raises(openai.APIError) as caught:
        list(client.chat.completions.create(model="gpt-test", messages=HELLO, stream=True))
    assert body_of(caught.value)["code"] == "upstream_timeout"
    assert time.monotonic() - started < 4
    [row] = rows_when_written(env)
    assert (row["status"], row["http_status"]) == ("error", 504)
    assert row["metadata"]["usage_estimated"] is True


# --- client disconnect -------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "model"), HOSTED)
def test_client_disconnect_closes_the_upstream_call_and_records_usage(
    client: openai.OpenAI, env: Env, provider: str, model: str
) -> None:
    # Given a provider that streams its first event and then keeps the stream open
    env.fakes.script(provider, Stall(after=1, seconds=30))
    stream = client.chat.completions.create(model=model, messages=HELLO, stream=True)
    # When the client reads the first chunk and leaves
    first = next(iter(stream))
    assert first.model == model
    stream.close()
    # Then Spine closes its upstream request (the provider stops generating)
    deadline = time.monotonic() + 10
    while env.fakes.disconnects(provider) == 0:
        assert time.monotonic() < deadline, "the upstream stream was never closed"
        time.sleep(0.05)
    # And records the call, tokens estimated from what was streamed
    [row] = rows_when_written(env)
    assert (row["status"], row["http_status"], row["error_code"]) == (
        "error",
        499,
        "client_disconnected",
    )
    assert row["metadata"]["usage_estimated"] is True
    assert row["prompt_tokens"] > 0


# --- the llama.cpp worker -----------------------------------------------------------------


@pytest.fixture
def worker_model(
    env: Env,
    llama_server: Path,
    model_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A real worker serving SmolLM2, and a `local-test` model routed to it."""
    worker = WorkerProcess(
        tmp_path / "worker",
        [{"id": "smollm2-135m"}],
        [model_file.parent],
        "--idle-ttl", "0",
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    worker.start(wait_ready=True)
    monkeypatch.setenv("SPINE_WORKER_TOKEN", TOKEN)
    try:
        yield env.add_local_model(worker.url, MODEL_FILE)
    finally:
        worker.stop()


@pytest.mark.worker
def test_worker_stream_passes_through(
    worker_model: str, emulator_url: str, api_key: str, env: Env
) -> None:
    with openai.OpenAI(base_url=f"{emulator_url}/v1", api_key=api_key, max_retries=0) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model=worker_model,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=16,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        texts = list(
            sdk.completions.create(
                model=worker_model,
                prompt="The capital of France is",
                max_tokens=8,
                stream=True,
            )
        )
    assert len([c for c in chunks if c.choices]) > 2
    assert content_of(chunks).strip()
    assert {c.model for c in chunks} == {worker_model}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert "".join(c.choices[0].text for c in texts if c.choices).strip()
    rows = rows_when_written(env, count=2)
    assert [(r["endpoint"], r["status"], r["provider"]) for r in rows] == [
        ("chat.completions", "ok", "llamacpp"),
        ("completions", "ok", "llamacpp"),
    ]
    assert rows[0]["completion_tokens"] == chunks[-1].usage.completion_tokens
    assert all(r["completion_tokens"] > 0 for r in rows)


# --- the deployed form: the app under uvicorn, as Lambda Web Adapter runs it -------------


@pytest.fixture
def web_adapter_url(env: Env) -> Iterator[str]:
    """The chat function's app under a real uvicorn, as functions/chat/run.sh starts it
    behind Lambda Web Adapter (which relays the bytes it gets), with no emulator in
    between to tidy the response up."""
    get_settings.cache_clear()
    db.reset()
    app = Gateway().module("ChatFunction").app
    with serving(uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))) as url:
        yield url
    get_settings.cache_clear()
    db.reset()


def test_stream_under_uvicorn_as_deployed_has_no_content_length(
    web_adapter_url: str, api_key: str, env: Env
) -> None:
    # A stream has no length known up front: a `content-length: 0` header would make
    # uvicorn (and any HTTP client) end the response before the first event.
    with openai.OpenAI(
        base_url=f"{web_adapter_url}/v1", api_key=api_key, max_retries=0, timeout=30
    ) as sdk:
        response = sdk.chat.completions.with_raw_response.create(
            model="gpt-test",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert "content-length" not in response.headers
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    assert content_of(chunks) == "echo: Say hello"
    assert chunks[-1].usage is not None
    [row] = rows_when_written(env)
    assert (row["status"], row["completion_tokens"]) == ("ok", chunks[-1].usage.completion_tokens)


# --- the buffered Mangum handler ---------------------------------------------------------


def test_mangum_handler_answers_a_stream_with_the_whole_event_stream(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # Mangum cannot stream; through it a streamed request still gets a correct body.
    result = gateway.request(
        "POST",
        "/v1/chat/completions",
        json_body={"model": "gpt-test", "messages": HELLO, "stream": True},
        key=api_key,
    )
    assert result.status == 200
    assert result.headers["content-type"].startswith("text/event-stream")
    events = [e for e in result.body.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: Say hello"
    [row] = env.usage_rows()
    assert row["request_id"] == result.headers["x-request-id"] and row["status"] == "ok"
