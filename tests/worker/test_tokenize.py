"""POST /v1/tokenize on the real control plane with the real llama-server and SmolLM2.

The proof that a count is exact: it equals the `prompt_tokens` the engine itself reports
for the same messages (or prompt) in a real completion with max_tokens 1.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.worker.conftest import TOKEN, WorkerProcess

pytestmark = pytest.mark.worker

MODEL = "smollm2-tok"
CONVERSATIONS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three prime numbers."},
        {"role": "assistant", "content": "2, 3, 5."},
        {"role": "user", "content": "And three more? Ünïcödé, 日本語, emoji 🎉."},
    ],
    [{"role": "user",
      "content": [{"type": "text", "text": "Parts "}, {"type": "text", "text": "join."}]}],
]  # fmt: skip


@pytest.fixture(scope="module")
def tok_worker(
    llama_server: Path, model_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker of its own: the race test below unloads and reloads its model at will."""
    process = WorkerProcess(
        tmp_path_factory.mktemp("tokenize-worker"),
        [
            {"id": MODEL, "aliases": ["smol-tok"]},
            {"id": "smollm2-tok-serial", "engine": {"parallel": 1, "context_size": 1024}},
        ],
        [model_file.parent],
        "--queue-size", "4",
        "--idle-ttl", "0",
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    process.start(wait_ready=True)
    yield process
    process.stop()


def tokenize(worker: WorkerProcess, body: Any) -> httpx.Response:
    return worker.client.post("/v1/tokenize", json=body)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_count_equals_the_engines_prompt_tokens(
    tok_worker: WorkerProcess, messages: list[dict[str, Any]]
) -> None:
    # Given the engine's own count for these messages
    completion = tok_worker.client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": messages, "max_tokens": 1, "cache_prompt": False},
    )
    assert completion.status_code == 200, completion.text
    reported = completion.json()["usage"]["prompt_tokens"]
    # When the same messages are tokenized
    response = tokenize(tok_worker, {"model": MODEL, "messages": messages})
    # Then the count is exactly the engine's
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "tokenize", "model": MODEL, "count": reported}


def test_text_count_equals_the_engines_prompt_tokens(tok_worker: WorkerProcess) -> None:
    prompt = "The sky is blue because of Rayleigh scattering; déjà vu, 東京."
    completion = tok_worker.client.post(
        "/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 1}
    )
    assert completion.status_code == 200, completion.text
    response = tokenize(tok_worker, {"model": "smol-tok", "prompt": prompt})  # by alias
    assert response.status_code == 200, response.text
    assert response.json() == {
        "object": "tokenize", "model": MODEL,
        "count": completion.json()["usage"]["prompt_tokens"],
    }  # fmt: skip
    # The chat template adds its markers: the same text as a message counts more.
    chat = tokenize(tok_worker, {"model": MODEL, "messages": [{"role": "user", "content": prompt}]})
    assert chat.json()["count"] > response.json()["count"]


def test_empty_prompt_counts_zero(tok_worker: WorkerProcess) -> None:
    response = tokenize(tok_worker, {"model": MODEL, "prompt": ""})
    assert response.status_code == 200 and response.json()["count"] == 0  # SmolLM2 adds no BOS


def test_unknown_model_is_404(tok_worker: WorkerProcess) -> None:
    response = tokenize(tok_worker, {"model": "no-such-model", "prompt": "hi"})
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found" and error["param"] == "model"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "hi"}, "model"),
        ({"model": "", "prompt": "hi"}, "model"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "prompt": "hi", "messages": [{"role": "user", "content": "x"}]},
         "messages"),
        ({"model": MODEL, "prompt": 42}, "prompt"),
        ({"model": MODEL, "prompt": ["hi"]}, "prompt"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": "hello"}, "messages"),
        ({"model": MODEL, "messages": [{"content": "no role"}]}, "messages[0]"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}, 7]}, "messages[1]"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "tools": {}}, "tools"),
        ({"model": MODEL, "prompt": "x", "tools": []}, "tools"),
        ({"model": MODEL, "prompt": "x", "add_special": False}, "add_special"),
        # Well-formed JSON the engine's template refuses: still the caller's 400.
        ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "messages"),
    ],
)  # fmt: skip
def test_malformed_body_is_400_naming_the_field(
    tok_worker: WorkerProcess, body: dict[str, Any], param: str
) -> None:
    response = tokenize(tok_worker, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_invalid_json_and_non_object_are_400(tok_worker: WorkerProcess) -> None:
    broken = tok_worker.client.post(
        "/v1/tokenize", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and error_of(broken)["code"] == "invalid_json"
    array = tokenize(tok_worker, [{"model": MODEL}])
    assert array.status_code == 400 and error_of(array)["code"] == "invalid_json"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_tokenize_needs_the_token(tok_worker: WorkerProcess, headers: dict[str, str]) -> None:
    response = httpx.post(
        tok_worker.url + "/v1/tokenize", json={"model": MODEL, "prompt": "hi"}, headers=headers
    )
    assert response.status_code == 401
    assert error_of(response)["type"] == "authentication_error"


def test_unloaded_model_is_loaded_on_demand(tok_worker: WorkerProcess) -> None:
    unloaded = tok_worker.client.post("/v1/models/unload", json={"model": MODEL})
    assert unloaded.status_code == 200, unloaded.text
    assert tok_worker.models()[MODEL]["state"] == "unloaded"
    response = tokenize(tok_worker, {"model": MODEL, "prompt": "hello world"})
    assert response.status_code == 200 and response.json()["count"] == 2
    assert tok_worker.models()[MODEL]["state"] == "ready"


async def test_tokenize_does_not_wait_behind_generations(tok_worker: WorkerProcess) -> None:
    # Given the one-slot model busy with a long generation and another one queued
    model = "smollm2-tok-serial"
    assert tok_worker.client.post("/v1/models/load", json={"model": model}).status_code == 200
    long = {"model": model, "messages": [{"role": "user", "content": "Tell a story."}],
            "max_tokens": 300, "ignore_eos": True}  # fmt: skip
    async with httpx.AsyncClient(
        base_url=tok_worker.url, headers=tok_worker.headers, timeout=120
    ) as client:
        running = asyncio.create_task(client.post("/v1/chat/completions", json=long))
        queued = asyncio.create_task(client.post("/v1/chat/completions", json=long))
        deadline = time.monotonic() + 30
        while tok_worker.models()[model]["queued"] < 1:
            assert time.monotonic() < deadline, "the second generation never queued"
            await asyncio.sleep(0.02)
        # When a count is asked meanwhile
        started = time.monotonic()
        response = await client.post("/v1/tokenize", json={"model": model, "prompt": "hi there"})
        took = time.monotonic() - started
        # Then it is answered while both generations still hold and wait for the slot
        state = tok_worker.models()[model]
        assert response.status_code == 200, response.text
        assert state["in_flight"] == 1 and state["queued"] == 1, state
        assert took < 5, took
        results = await asyncio.gather(running, queued)
    assert [r.status_code for r in results] == [200, 200]


async def test_unload_never_stops_an_engine_under_a_tokenize(tok_worker: WorkerProcess) -> None:
    # Given clients tokenizing without pause, and an operator unloading the model again and
    # again: an unload either waits its turn (409, the model is busy) or happens between
    # counts (the next count loads the model again). Never may a count lose its engine.
    body = {"model": MODEL, "messages": CONVERSATIONS[1]}
    statuses: list[int] = []
    unloads: list[int] = []
    deadline = time.monotonic() + 30

    def going() -> bool:
        # Until both outcomes were seen (the race was really run), within the deadline.
        seen_both = 409 in unloads and 200 in unloads and len(statuses) >= 50
        return not seen_both and time.monotonic() < deadline

    async def count_forever(client: httpx.AsyncClient) -> None:
        while going():
            response = await client.post("/v1/tokenize", json=body)
            statuses.append(response.status_code)
            assert response.status_code == 200, response.text
            # Short, uneven pauses leave gaps in which an unload can run.
            await asyncio.sleep(random.uniform(0, 0.03))

    async def unload_forever(client: httpx.AsyncClient) -> None:
        while going():
            response = await client.post("/v1/models/unload", json={"model": MODEL})
            unloads.append(response.status_code)
            assert response.status_code in (200, 409), response.text
            await asyncio.sleep(0.02)

    async with httpx.AsyncClient(
        base_url=tok_worker.url, headers=tok_worker.headers, timeout=60
    ) as client:
        await asyncio.gather(*(count_forever(client) for _ in range(3)), unload_forever(client))
    assert statuses and set(statuses) == {200}
    assert 409 in unloads, "no unload ever met a tokenize in flight"
    assert 200 in unloads, "no unload ever ran"
    # The engine count stayed consistent: the model is either unloaded or ready, never lost.
    assert tok_worker.models()[MODEL]["state"] in ("ready", "unloaded")
    metrics = tok_worker.client.get("/metrics").text
    assert f'spine_worker_requests_total{{endpoint="tokenize",model="{MODEL}",status="200"}}' in (
        metrics
    )
