"""The local model (the real llama.cpp worker and bundled SmolLM2) behind the API
surface: Anthropic's Messages API translated for it and counted by its own tokenizer,
OpenAI's Responses API with a stored response continued, and the worker's per-user
fairness applied to callers coming through the gateway."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.integration.conftest import Env
from tests.integration.emulator import emulator_url, running_emulator
from tests.worker.conftest import MODEL_FILE, TOKEN, WorkerProcess, llama_server, model_file

__all__ = ["emulator_url", "llama_server", "model_file"]


@pytest.fixture
def one_slot_worker(
    env: Env, llama_server: Path, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerProcess]:
    """A real worker serving SmolLM2 with ONE slot, so requests queue and the worker's
    scheduler decides who runs next; `local-test` routes to it."""
    worker = WorkerProcess(
        tmp_path / "worker",
        [{"id": "smollm2-135m", "engine": {"parallel": 1}}],
        [model_file.parent],
        "--idle-ttl", "0",
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    worker.start(wait_ready=True)
    monkeypatch.setenv("SPINE_WORKER_TOKEN", TOKEN)
    env.add_local_model(worker.url, MODEL_FILE)
    try:
        yield worker
    finally:
        worker.stop()


@pytest.mark.worker
def test_the_local_model_answers_the_messages_api_and_counts_exactly(
    one_slot_worker: WorkerProcess, emulator_url: str, api_key: str, env: Env
) -> None:
    request = {
        "model": "local-test",
        "max_tokens": 12,
        "extra_body": {"temperature": 0.0},  # greedy; the SDK no longer names it
        "system": "You answer in one word.",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    }
    with anthropic.Anthropic(base_url=emulator_url, api_key=api_key, max_retries=0) as claude:
        whole = claude.messages.create(**request)  # type: ignore[call-overload]
        with claude.messages.stream(**request) as stream:  # type: ignore[call-overload]
            streamed = stream.get_final_message()
    assert whole.model == "local-test" and whole.content[0].type == "text"
    assert whole.content[0].text.strip()
    # Greedy decoding: the stream assembles to the same message and token counts. The
    # engine's prompt cache serves the second call's prompt, which Anthropic's usage
    # reports apart from the uncached input.
    assert streamed.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    prompt = whole.usage.input_tokens + (whole.usage.cache_read_input_tokens or 0)
    assert streamed.usage.input_tokens + (streamed.usage.cache_read_input_tokens or 0) == prompt
    assert prompt > 10
    assert streamed.usage.output_tokens == whole.usage.output_tokens > 0
    counted = httpx.post(
        f"{emulator_url}/v1/messages/count_tokens",
        headers={"x-api-key": api_key},
        json={k: request[k] for k in ("model", "system", "messages")},  # type: ignore[misc]
        timeout=30,
    )
    assert counted.status_code == 200, counted.text
    assert counted.headers["x-spine-token-count"] == "exact"
    # The worker's tokenizer with the model's chat template: what the engine billed.
    assert counted.json()["input_tokens"] == prompt
    rows = env.usage_rows()
    assert [(r["endpoint"], r["provider"], r["status"]) for r in rows] == [
        ("messages", "llamacpp", "ok")
    ] * 2


@pytest.fixture
def emulator_for_four(env: Env) -> Iterator[str]:
    """`spine local` with four containers per function, so four callers' requests reach
    the worker at once (Lambda runs one request per container)."""
    with running_emulator(env, pool_size=4) as url:
        yield url


def _warm(url: str, key: str, *, containers: int) -> None:
    """Start every container of the chat function (a refused request is enough), so
    the requests that follow arrive in the order they are sent, without cold starts."""

    def refused() -> None:
        httpx.post(f"{url}/v1/chat/completions", json={}, headers={"x-api-key": key}, timeout=60)

    threads = [threading.Thread(target=refused) for _ in range(containers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _queue_reaches(worker: WorkerProcess, depth: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    gauge = 'spine_worker_queue_depth{model="smollm2-135m"}'
    while time.monotonic() < deadline:
        for line in worker.client.get("/metrics").text.splitlines():
            if line.startswith(gauge) and float(line.split()[-1]) >= depth:
                return True
        time.sleep(0.02)
    return False


@pytest.mark.worker
def test_one_callers_burst_does_not_run_ahead_of_another_caller(
    one_slot_worker: WorkerProcess, emulator_for_four: str, env: Env
) -> None:
    alice = env.create_key("alice", principal="alice")
    bob = env.create_key("bob", principal="bob")
    first_token: dict[str, float] = {}
    failures: list[BaseException] = []

    def stream(name: str, key: str) -> None:
        try:
            with openai.OpenAI(
                base_url=f"{emulator_for_four}/v1", api_key=key, max_retries=0, timeout=60
            ) as sdk:
                chunks = sdk.chat.completions.create(
                    model="local-test",
                    messages=[{"role": "user", "content": "Write a long story about a dragon."}],
                    max_tokens=128,
                    temperature=0,
                    stream=True,
                )
                for chunk in chunks:
                    if chunk.choices and chunk.choices[0].delta.content:
                        first_token.setdefault(name, time.monotonic())
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    _warm(emulator_for_four, alice, containers=4)
    # Alice's burst of three: one holds the slot, two wait in the worker's queue...
    threads = [threading.Thread(target=stream, args=(f"alice{i}", alice)) for i in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    assert _queue_reaches(one_slot_worker, 2), "alice's burst never queued"
    # ...when Bob asks once.
    bob_thread = threading.Thread(target=stream, args=("bob", bob))
    bob_thread.start()
    for thread in [*threads, bob_thread]:
        thread.join(timeout=120)
    assert not failures, failures
    order = sorted(first_token, key=first_token.__getitem__)
    assert len(order) == 4, first_token
    # Round-robin across users: Bob runs right after the request that held the slot,
    # ahead of Alice's queued second and third (one user at normal priority, as the
    # gateway's traffic reached the worker before, would have put him last).
    assert order.index("bob") == 1, order


@pytest.mark.worker
def test_the_local_model_answers_the_responses_api_and_continues_a_stored_one(
    one_slot_worker: WorkerProcess, emulator_url: str, api_key: str, env: Env
) -> None:
    with openai.OpenAI(base_url=f"{emulator_url}/v1", api_key=api_key, max_retries=0) as sdk:
        first = sdk.responses.create(
            model="local-test",
            instructions="You answer in one word.",
            input="What is the capital of France?",
            max_output_tokens=12,
            temperature=0,
        )
        with sdk.responses.stream(
            model="local-test",
            input="And of Italy?",
            previous_response_id=first.id,
            max_output_tokens=12,
            temperature=0,
        ) as stream:
            follow_up = stream.get_final_response()
    assert first.status == "completed" and first.output_text.strip()
    assert follow_up.status == "completed" and follow_up.output_text.strip()
    assert follow_up.usage is not None and first.usage is not None
    # The follow-up carried the first turn: its prompt is longer than the first's
    assert follow_up.usage.input_tokens > first.usage.input_tokens
    rows = env.usage_rows()
    assert [(r["endpoint"], r["provider"], r["status"]) for r in rows] == [
        ("responses", "llamacpp", "ok")
    ] * 2
